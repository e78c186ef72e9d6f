"""Divergence through the command line, both tracks: diverged models are named with their grid
values and step, frozen, tabled and listed in summary.md, the figures drawn; the other members
of their ensembles end exactly as with a rate that does not diverge; a run whose every model
diverged ends with exit code 1 and one line, its report written."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rare_tasks.core import tables, workdir

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
SYNTHETIC = ["--config=configs/width_by_frequency.py:smoke", "--config.train.steps=200",
             "--config.eval_every=50", "--config.grid.frequency=(0.03,0.2)",
             "--config.grid.width=(2,8)"]
LM = ["--config=configs/lm_pretrain.py:smoke", "--config.train.steps=50"]


def _run(args: list[str], wd: Path) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "experiments.main", *args, f"--workdir={wd}",
                         "--cpu_devices=2"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                        timeout=600)


def _records(wd: Path, cells) -> list[dict]:
  return [r for r in workdir.read_metrics(wd) if r["cell"] in cells]


def test_diverged_cells_are_frozen_named_and_tabled_and_the_others_train_as_without_them(
    tmp_path):
  wild = _run([*SYNTHETIC, "--config.grid.learning_rate=(0.003,1e30)"], tmp_path / "wild")
  calm = _run([*SYNTHETIC, "--config.grid.learning_rate=(0.003,0.001)"], tmp_path / "calm")
  assert wild.returncode == 0 and calm.returncode == 0, wild.stderr[-2000:]
  assert "Traceback" not in wild.stderr
  rows = tables.read_csv(tmp_path / "wild" / "results.csv")
  diverged = {int(r["cell"]) for r in rows if r["diverged_step"]}
  assert diverged == {int(r["cell"]) for r in rows if r["learning_rate"] == "1e+30"} != set()
  assert all(r["learned"] == "False" and r["fvu"] == "nan" for r in rows
             if int(r["cell"]) in diverged)
  for cell in diverged:
    assert f"cell {cell} (width=" in wild.stderr and "diverged at step 2" in wild.stderr
  summary = (tmp_path / "wild" / "summary.md").read_text()
  assert f"{len(diverged)} of 8 models diverged" in summary
  assert f"{len(diverged)} diverged cells left out" in summary
  for name in ("width_by_frequency", "learning_curves"):
    assert (tmp_path / "wild" / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
  others = {int(r["cell"]) for r in rows} - diverged
  assert _records(tmp_path / "wild", others) == _records(tmp_path / "calm", others)


@pytest.mark.parametrize("args", [
    [*LM, "--config.train.learning_rate=1000.0"],
    [*SYNTHETIC, "--config.grid.learning_rate=(1e30,)"]], ids=["lm", "synthetic"])
def test_a_run_whose_every_model_diverged_exits_1_with_one_line_and_its_report(tmp_path, args):
  out = _run(args, tmp_path / "wd")
  assert out.returncode == 1 and "Traceback" not in out.stderr
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("error: every model diverged (") and "summary.md" in last
  summary = (tmp_path / "wd" / "summary.md").read_text()
  assert "## Diverged models" in summary and ": step " in summary
  assert list((tmp_path / "wd" / "figures").glob("*.png"))
