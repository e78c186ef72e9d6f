"""End-to-end tests of rare_tasks/grid_runner.py on a tiny grid."""

import json
import shutil

import jax
import numpy as np
import pytest

from rare_tasks import grid_runner, workdir
from rare_tasks.config_schema import ConfigError, base_config
from rare_tasks.results_table import COLUMNS, read_results


def tiny_config():
  c = base_config()
  c.task.num_tasks = 4
  c.task.block_size = 2
  c.task.common_exponent = 1.0
  c.grid.width = (2, 8)
  c.grid.rare_frequency = (0.05, 0.3)
  c.grid.seed = (0, 1)
  c.train.steps = 60
  c.train.batch_size = 32
  c.train.learning_rate = 1e-2
  c.eval_every = 20
  c.eval_samples = 256
  c.checkpoint_interval_s = 0.0
  return c


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The tiny grid run uninterrupted on all 8 devices."""
  wd = tmp_path_factory.mktemp("reference")
  report = grid_runner.run(tiny_config(), wd)
  return wd, report


def _numbers(rows, column):
  return np.array([float(r[column]) for r in rows])


def test_work_directory_is_complete(reference):
  wd, report = reference
  assert report.trained_steps == 2 * 60  # two groups (widths), 60 steps each
  rows = read_results(wd)
  assert list(rows[0]) == list(COLUMNS)
  assert len(rows) == 8 * 4  # cells x tasks
  assert {(r["width"], r["rare_frequency"], r["seed"]) for r in rows} == {
      (w, f, s) for w in ("2", "8") for f in ("0.05", "0.3") for s in ("0", "1")}
  rare = [r for r in rows if r["is_rare"] == "True"]
  assert {r["task"] for r in rare} == {"3"}
  assert all(r["task_frequency"] == r["rare_frequency"] for r in rare)
  config = json.loads((wd / "config.json").read_text())
  assert config["grid"]["width"] == [2, 8] and config["train"]["steps"] == 60
  steps = sorted({r["step"] for r in workdir.read_metrics(wd) if r["cell"] == 0})
  assert steps == [0, 20, 40, 60]
  for name in ("figures/width_by_frequency.png", "figures/learning_curves.png"):
    assert (wd / name).read_bytes()[:4] == b"\x89PNG"
  summary = (wd / "summary.md").read_text()
  assert "agree" in summary and "width_by_frequency.png" in summary
  predictions = json.loads((wd / "predictions.json").read_text())
  assert len(predictions) == 8 and len(predictions[0]["utility_order"]) == 8


def test_results_match_metrics_and_learned_flags(reference):
  wd, _ = reference
  rows = read_results(wd)
  final = {r["cell"]: r for r in workdir.read_metrics(wd) if r["step"] == 60}
  for r in rows:
    assert float(r["fvu"]) == pytest.approx(final[int(r["cell"])]["fvu"][int(r["task"])])
    assert (r["learned"] == "True") == (float(r["fvu"]) <= 0.8)
    assert (r["predicted_learned"] == "True") == (float(r["predicted_fvu"]) <= 0.8)


def test_one_device_equals_eight_devices(reference, tmp_path):
  wd8, _ = reference
  grid_runner.run(tiny_config(), tmp_path, devices=jax.devices()[:1])
  rows1, rows8 = read_results(tmp_path), read_results(wd8)
  for column in ("fvu", "population_fvu", "feature_capture"):
    np.testing.assert_allclose(_numbers(rows1, column), _numbers(rows8, column), rtol=2e-5,
                               atol=2e-6)


class _Killed(Exception):
  pass


def test_resume_after_interruption_equals_uninterrupted(reference, tmp_path):
  wd_ref, _ = reference
  calls = []

  def kill_in_second_group(group, step):
    calls.append((group, step))
    if len(calls) == 4:  # after step 20 of the second group
      raise _Killed

  with pytest.raises(_Killed):
    grid_runner.run(tiny_config(), tmp_path, chunk_hook=kill_in_second_group)
  assert not (tmp_path / "results.csv").exists()
  report = grid_runner.run(tiny_config(), tmp_path)
  assert report.trained_steps == 40  # only the rest of the second group
  assert (tmp_path / "results.csv").read_text() == (wd_ref / "results.csv").read_text()


def test_finished_run_reinvoked_does_not_retrain(reference):
  wd, _ = reference
  before = (wd / "metrics.jsonl").read_text()
  report = grid_runner.run(tiny_config(), wd)
  assert report.trained_steps == 0
  assert (wd / "metrics.jsonl").read_text() == before


def test_workdir_with_another_config_is_refused_unless_overwrite(tmp_path):
  c = tiny_config()
  c.grid.width = (2,)
  c.grid.seed = (0,)
  c.train.steps = 20
  grid_runner.run(c, tmp_path)
  other = tiny_config()
  other.grid.width = (2,)
  other.grid.seed = (0,)
  other.train.steps = 40
  with pytest.raises(workdir.WorkdirError, match="train.steps: 20 there, 40 now"):
    grid_runner.run(other, tmp_path)
  report = grid_runner.run(other, tmp_path, overwrite=True)
  assert report.trained_steps == 40
  assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 40


def test_bad_config_fails_before_any_compute(tmp_path):
  c = tiny_config()
  c.grid.rare_frequency = (0.05, 1.2)
  with pytest.raises(ConfigError, match=r"grid.rare_frequency\[1\] = 1.2"):
    grid_runner.run(c, tmp_path / "wd")
  assert not (tmp_path / "wd").exists()


def test_eval_steps():
  assert grid_runner.eval_steps(60, 20) == [20, 40, 60]
  assert grid_runner.eval_steps(50, 20) == [20, 40, 50]
  assert grid_runner.eval_steps(10, 20) == [10]


def test_metrics_deferred_between_checkpoints_give_the_same_results(reference, tmp_path):
  wd_ref, _ = reference
  c = tiny_config()
  c.checkpoint_interval_s = 1e9  # only the final checkpoint; metrics written a chunk late
  grid_runner.run(c, tmp_path)
  steps = sorted({r["step"] for r in workdir.read_metrics(tmp_path) if r["cell"] == 5})
  assert steps == [0, 20, 40, 60]
  assert (tmp_path / "results.csv").read_text() == (wd_ref / "results.csv").read_text()


def test_lost_final_record_is_measured_again_from_the_checkpoint(reference, tmp_path):
  wd_ref, _ = reference
  shutil.copytree(wd_ref, tmp_path / "wd")
  wd = tmp_path / "wd"
  lines = (wd / "metrics.jsonl").read_text().splitlines()
  kept = [ln for ln in lines if not ('"cell": 6,' in ln and '"step": 60' in ln)]
  assert len(kept) == len(lines) - 1
  (wd / "metrics.jsonl").write_text("\n".join(kept) + "\n")
  (wd / "results.csv").unlink()
  report = grid_runner.run(tiny_config(), wd)
  assert report.trained_steps == 0
  assert (wd / "results.csv").read_text() == (wd_ref / "results.csv").read_text()


def test_a_diverging_cell_is_reported_not_fatal(tmp_path):
  c = tiny_config()
  c.grid.width = (4,)
  c.grid.seed = (0,)
  c.grid.rare_frequency = (0.3,)
  c.train.optimizer = "sgd"
  c.grid.learning_rate = (0.01, 100.0)
  report = grid_runner.run(c, tmp_path)
  rows = read_results(tmp_path)
  bad = [r for r in rows if r["learning_rate"] == "100.0"]
  good = [r for r in rows if r["learning_rate"] == "0.01"]
  assert all(r["fvu"] == "nan" and r["learned"] == "False" for r in bad)
  assert all(np.isfinite(float(r["fvu"])) for r in good)
  assert report.summary["diverged_cells"] == [int(bad[0]["cell"])]
  assert "Diverged" in (tmp_path / "summary.md").read_text()
