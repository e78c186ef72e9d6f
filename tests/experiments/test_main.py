"""Tests of experiments/main.py as a user runs it: every flag, config or work-directory mistake is
one line and exit code 2; a hard kill followed by the same command resumes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rare_tasks.synthetic.report.results import read_results

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--config=configs/width_by_frequency.py:smoke", "--config.train.steps=400",
         "--config.eval_every=50", "--config.checkpoint_interval_s=0",
         "--config.grid.frequency=(0.03,0.2)"]
WIDTHS = "--config.grid.width=(2,8)"
LM = "--config=configs/lm_pretrain.py:smoke"
INJECT = "--config=configs/lm_size_by_frequency.py:smoke"
DESIGN = "--config=configs/lm_mixture_design.py:smoke"


def _main(*args, file_size_kb=None):
  """experiments.main with `args`, started; with file_size_kb, no file it writes can grow past
  that many KiB (a full quota, for root too: a refused write is an error, not a kill)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "experiments.main", *args]
  if file_size_kb is not None:
    cmd = ["bash", "-c", f'trap "" XFSZ; ulimit -f {file_size_kb}; exec "$@"', "bash", *cmd]
  return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


# Command lines refused before any compute: (extra arguments, what stderr's one line holds).
# Their processes start together (the module's first test waits for its own), so that their
# start-up (importing JAX) overlaps.
REFUSED = {
    "bad value": (["--config.grid.width=(0,8)"],
                  "error: config.grid.width[0] = 0: allowed: an integer > 0"),
    "bad value of an axis the preset does not sweep": (
        ["--config.grid.learning_rate=(1e-3,-1.0)"],
        "error: config.grid.learning_rate[1] = -1.0: allowed: a finite number > 0"),
    "misspelt field of the default config": (
        ["--config.train.stpes=3"],
        "error: --config.train.stpes=3: config.train.stpes is not a known field; did you mean "
        "config.train.steps"),
    "misspelt field in a section": (
        ["--config.train.stpes=3"],
        "error: --config.train.stpes=3: config.train.stpes is not a known field; did you mean "
        "config.train.steps"),
    "misspelt grid axis": (
        ["--config.grid.widht=(8,)"],
        "error: --config.grid.widht=(8,): config.grid.widht is not a known field; did you mean "
        "config.grid.width"),
    "misspelt top-level field": (
        ["--config.eval_evry=5"],
        "config.eval_evry is not a known field; did you mean config.eval_every"),
    "misspelt section": (["--config.trian.steps=3"], "config.trian.steps is not a known field"),
    "wrong type": (["--config.train.steps=abc"],
                   "error: --config.train.steps=abc: config.train.steps = 'abc': allowed: an int"),
    "missing config file": (
        ["--config=configs/width_by_frequencyy.py"],
        "error: --config=configs/width_by_frequencyy.py: no such config file; config files in "
        "configs: configs/complexity.py"),
    "missing preset": (
        ["--config=configs/width_by_frequency.py:smok"],
        "error: configs/width_by_frequency.py:smok: unknown preset; allowed: ('default', "
        "'smoke')"),
    "unknown flag": (["--workdri=x"], "error: Unknown command line flag 'workdri'"),
    "language model: unknown preset": (
        [LM, "--config.model.preset=5M"], "error: config.model.preset = '5M': allowed: one of"),
    "language model: heads that do not divide d_model": (
        [LM, "--config.model.d_model=40", "--config.model.num_heads=3"],
        "error: config.model.num_heads = 3: allowed: a divisor of model.d_model = 40"),
    "language model: a batch the devices do not split": (
        [LM, "--config.init_seeds=(0,)", "--config.train.batch_size=33"],
        "error: config.train.batch_size = 33: allowed: a multiple of "),
    "injection study: a frequency above one instance per row": (
        [INJECT, "--config.grid.frequency=(0.5,1.5)"],
        "error: config.grid.frequency = (0.5, 1.5): allowed: a non-empty tuple of distinct "
        "numbers in (0, 1)"),
    "injection study: a burst larger than the batch": (
        [INJECT, "--config.injection.schedule=bursts", "--config.grid.gap=(1,1000)"],
        "error: config.grid.gap = 1000: allowed: gaps whose bursts fit in the batch's"),
    "mixture design: a range upside down": (
        [DESIGN, "--config.design.min_frequency=0.9"],
        "error: config.design.min_frequency = 0.9: allowed: a frequency below "
        "design.max_frequency = 0.8"),
    "renamed field": (
        ["--config.task.rare_frequency=0.1"],
        "error: --config.task.rare_frequency=0.1: config.task.rare_frequency was renamed "
        "config.injection.frequency"),
    "renamed field and value": (
        ["--config.injection.mode=mixture"],
        "error: --config.injection.mode=mixture: config.injection.mode was renamed "
        "config.injection.schedule"),
    "renamed value": (
        ["--config.injection.schedule=mixture"],
        "error: config.injection.schedule = 'mixture' was renamed 'steady'"),
    "work directory that cannot be created": (
        [WIDTHS, "--workdir={tmp}/file/wd"],
        "error: {tmp}/file/wd: cannot create or write the work directory"),
}


CLEAR = "clear the text cache"


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
  """The refused command lines' processes, all started at once: name -> (Popen, tmp dir)."""
  procs = {}
  tmp = tmp_path_factory.mktemp("clear")  # --clear_cache, started with the others
  (tmp / "cache" / "text" / "jsonl-0123").mkdir(parents=True)
  (tmp / "cache" / "text" / "jsonl-0123" / "rows").write_bytes(b"\0" * 250_000)
  procs[CLEAR] = (_main(LM, f"--config.data.cache_dir={tmp / 'cache'}", "--clear_cache"), tmp)
  for name, (args, _) in REFUSED.items():
    tmp = tmp_path_factory.mktemp("refused")
    (tmp / "file").write_text("not a folder")
    args = [a.replace("{tmp}", str(tmp)) for a in args]
    workdir = [] if any(a.startswith("--workdir") for a in args) else [f"--workdir={tmp / 'wd'}"]
    own_config = (name == "misspelt field of the default config"
                  or any(a in args for a in (LM, INJECT, DESIGN)))
    preset = [] if own_config else SMALL
    procs[name] = (_main(*preset, *args, *workdir), tmp)
  yield procs
  for proc, _ in procs.values():
    if proc.poll() is None:
      proc.kill()


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_flag_config_or_work_directory_mistake_is_one_line_and_exit_code_2(refused, name):
  proc, tmp = refused[name]
  _, err = proc.communicate(timeout=240)
  message = REFUSED[name][1].replace("{tmp}", str(tmp))
  assert proc.returncode == 2, err
  assert err.count("\n") == 1 and message in err, err
  assert not (tmp / "wd").exists() and (tmp / "file").read_text() == "not a folder"


def test_a_work_directory_that_cannot_be_written_is_one_line_and_keeps_finished_work(tmp_path):
  # 32 KiB per file: training, metrics.jsonl and results.csv fit; the first figure does not.
  wd = tmp_path / "wd"
  proc = _main(*SMALL, WIDTHS, "--config.train.steps=50", f"--workdir={wd}", file_size_kb=32)
  _, err = proc.communicate(timeout=240)
  # A file-size limit is a full disk for this run (rare_tasks.core.disk): exit 1, the same
  # command resumes once there is room.
  assert proc.returncode == 1, err
  last = err.strip().splitlines()[-1]
  assert last.startswith(f"error: cannot write {wd}/figures/") and "size limit" in last, err
  assert "Traceback" not in err
  assert len(read_results(wd)) == 4 * 8  # cells x tasks: nothing finished was lost


def test_hard_kill_then_same_command_resumes_to_the_same_results(tmp_path):
  killed, clean = tmp_path / "killed", tmp_path / "clean"
  proc = _main(*SMALL, WIDTHS, f"--workdir={killed}")
  # Kill as soon as the second group has a checkpoint, mid-run.
  deadline = time.time() + 240
  second = killed / "checkpoints" / "width8_identity_depth0"
  while time.time() < deadline and proc.poll() is None:
    if second.exists() and any(p.name.isdigit() for p in second.iterdir()):
      break
    time.sleep(0.05)
  assert proc.poll() is None, "the run ended before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed / "results.csv").exists()

  logs = {}
  procs = {wd: _main(*SMALL, WIDTHS, f"--workdir={wd}") for wd in (killed, clean)}  # at once
  for wd, proc in procs.items():
    _, logs[wd] = proc.communicate(timeout=240)
    assert proc.returncode == 0, logs[wd]
  assert "width8_identity_depth0: resuming from the checkpoint" in logs[killed]
  assert "resuming" not in logs[clean]
  killed_rows, clean_rows = read_results(killed), read_results(clean)
  assert [r["cell"] for r in killed_rows] == [r["cell"] for r in clean_rows]
  for column in ("fvu", "population_fvu", "feature_capture"):
    np.testing.assert_allclose([float(r[column]) for r in killed_rows],
                               [float(r[column]) for r in clean_rows], rtol=1e-6)


def test_scaling_fit_command_names_what_is_missing(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-m", "experiments.scaling_fit", f"--workdir={tmp_path}"],
                       cwd=ROOT, env=env, capture_output=True, text=True)
  assert out.returncode == 2
  assert f"error: {tmp_path} holds no finished grid run (no config.json)" in out.stderr


def test_clear_cache_deletes_the_text_cache_and_says_how_much(refused):
  proc, tmp = refused[CLEAR]
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err
  assert out.strip() == f"cleared {tmp / 'cache'}: 0.2 MB freed"
  assert not (tmp / "cache" / "text").exists()
