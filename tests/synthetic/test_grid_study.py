"""End-to-end tests of rare_tasks/synthetic/grid_study.py on a tiny grid: the work directory,
device-count invariance, resume, re-report, overwrite, refusals, divergence."""

import json
import logging
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from rare_tasks.core import tables, tensorboard, workdir
from rare_tasks.synthetic import grid_study
from rare_tasks.synthetic.config import ALIASES, CELL_VALUES, ConfigError, base_config
from rare_tasks.synthetic.report.results import read_results
from tests.callbacks import after_chunk
from tests.synthetic.conftest import mechanism_config, tiny_config
from tests.tensorboard_events import as_float32, purge_steps, runs, shown


def _numbers(rows, column):
  return np.array([float(r[column]) for r in rows])


def test_work_directory_is_complete(reference):
  wd, report = reference
  assert report.trained_steps == 2 * 60  # two groups (widths), 60 steps each
  rows = read_results(wd)
  assert list(rows[0]) == [
      "width", "rare_frequency", "seed", "task", "task_frequency", "beta", "fvu", "predicted_fvu",
      "feature_capture", "learned", "predicted_learned", "is_rare", "population_fvu",
      "critical_width", "learning_rate", "common_exponent", "activation", "num_hidden_layers",
      "cell", "step", "diverged_step"]
  assert len(rows) == 8 * 4  # cells x tasks
  assert all(r["diverged_step"] == "" for r in rows)
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
  grid_study.run(tiny_config(), tmp_path, devices=jax.devices()[:1])
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
    grid_study.run(tiny_config(), tmp_path, callbacks=[after_chunk(kill_in_second_group)])
  assert not (tmp_path / "results.csv").exists()
  report = grid_study.run(tiny_config(), tmp_path)
  assert report.trained_steps == 40  # only the rest of the second group
  assert (tmp_path / "results.csv").read_text() == (wd_ref / "results.csv").read_text()


def test_finished_run_reinvoked_does_not_retrain(reference):
  wd, _ = reference
  before = (wd / "metrics.jsonl").read_text()
  report = grid_study.run(tiny_config(), wd)
  assert report.trained_steps == 0
  assert (wd / "metrics.jsonl").read_text() == before


def test_a_finished_run_re_reported_builds_no_program(reference, caplog):
  wd, _ = reference
  with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
    jax.jit(lambda x: x * 3)(1.0)  # the logs see a program built...
    seen = len(caplog.records)
    grid_study.run(tiny_config(), wd)  # ...and none while a finished run is re-reported
  assert seen >= 2
  assert [r.getMessage() for r in caplog.records[seen:]
          if r.name.startswith("jax")] == []


def test_workdir_with_another_config_is_refused_unless_overwrite(tmp_path):
  c = tiny_config()
  c.grid.width = (2,)
  c.grid.seed = (0,)
  c.train.steps = 20
  c.log.tensorboard = True
  grid_study.run(c, tmp_path)
  assert (tmp_path / tensorboard.DIR).is_dir()
  other = tiny_config()
  other.grid.width = (2,)
  other.grid.seed = (0,)
  other.train.steps = 40
  with pytest.raises(workdir.WorkdirError, match="train.steps: 20 there, 40 now"):
    grid_study.run(other, tmp_path)
  report = grid_study.run(other, tmp_path, overwrite=True)
  assert report.trained_steps == 40
  assert not (tmp_path / tensorboard.DIR).exists()  # a declared file of the run
  assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 40


def test_bad_config_fails_before_any_compute(tmp_path):
  c = tiny_config()
  c.grid.frequency = (0.05, 1.2)
  with pytest.raises(ConfigError, match=r"grid.frequency\[1\] = 1.2"):
    grid_study.run(c, tmp_path / "wd")
  assert not (tmp_path / "wd").exists()


def test_a_diverging_cell_is_reported_not_fatal(tmp_path):
  c = tiny_config()
  c.grid.width = (4,)
  c.grid.seed = (0,)
  c.grid.frequency = (0.3,)
  c.train.optimizer = "sgd"
  c.grid.learning_rate = (0.01, 100.0)
  c.log.tensorboard = True
  report = grid_study.run(c, tmp_path)
  rows = read_results(tmp_path)
  bad = [r for r in rows if r["learning_rate"] == "100.0"]
  good = [r for r in rows if r["learning_rate"] == "0.01"]
  assert all(r["fvu"] == "nan" and r["learned"] == "False" for r in bad)
  assert all(np.isfinite(float(r["fvu"])) for r in good)
  assert report.summary["diverged_cells"] == [int(bad[0]["cell"])]
  assert "Diverged" in (tmp_path / "summary.md").read_text()
  # TensorBoard: the learning rate the grid varies names the runs; the diverged cell's curves
  # end at its last finite point.
  name = "width=4,frequency=0.3,seed=0,learning_rate={}".format
  _check_tensorboard(tmp_path, {int(good[0]["cell"]): name(0.01), int(bad[0]["cell"]): name(100.0)})
  assert max(shown(tmp_path / tensorboard.DIR / name(100.0))["fvu/task_3_rare"]) < 60


def _check_tensorboard(wd, names, num_tasks=4, rare=3):
  """The TensorBoard runs of a grid run are one per cell, named `names[cell]`, each showing its
  records' headline fields at their steps (float32): the train loss and every measurement, each
  per-task vector per task (the rare task marked), without the grid values, bookkeeping, the
  K x K cosines and None (a golden comparison with metrics.jsonl)."""
  board = wd / tensorboard.DIR
  assert runs(board) == sorted(names.values())
  skip = {*CELL_VALUES, "cell", "step", "group", "diverged_step"}
  number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
  for cell, name in names.items():
    want = {}
    for r in workdir.read_metrics(wd):
      for k, v in r.items() if r["cell"] == cell else ():
        if k in skip:
          continue
        if number(v):
          want.setdefault(k, {})[r["step"]] = as_float32(v)
        elif isinstance(v, list) and len(v) == num_tasks:
          for t, x in enumerate(v):
            if number(x):
              tag = f"{k}/task_{t}" + ("_rare" if t == rare else "")
              want.setdefault(tag, {})[r["step"]] = as_float32(x)
    assert shown(board / name) == want, name


def test_a_killed_run_resumed_shows_each_cells_scalars_once_in_tensorboard(mechanism_run_resumed):
  wd = mechanism_run_resumed
  names = {r["cell"]: f"width={r['width']},frequency=0.0625,seed={r['seed']},gap={r['gap']}"
           for r in workdir.read_metrics(wd)}
  assert len(set(names.values())) == 8
  _check_tensorboard(wd, names)
  tags = set(shown(wd / tensorboard.DIR / names[0]))
  assert {"train_loss", "fvu/task_0", "fvu/task_3_rare", "effective_neurons/task_0",
          "rare_grad_norm", "grad_norm/task_3_rare"} <= tags
  assert not any(t.startswith(("cosine", "width", "learning_rate", "beta")) for t in tags)
  for r in workdir.read_metrics(wd):  # killed after the second group's checkpoint at step 32
    assert purge_steps(wd / tensorboard.DIR / names[r["cell"]]) == (
        [0] if r["width"] == 2 else [0, 33])


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "workdir_before_layout"


def _copy_fixture(name, tmp_path):
  wd = tmp_path / name
  shutil.copytree(FIXTURES / name, wd)
  return wd


def _finished_config():
  c = mechanism_config()
  c.grid.seed = (0,)
  return c


def _in_todays_names(old):
  """A config.json the old code wrote, in today's names (ALIASES), with the fields added since
  at the values the old code implied."""
  new = ALIASES.translate(old)
  new["injection"]["unit"] = "per_example"
  new["learned"]["criterion"] = "loss"
  new["log"] = {"tensorboard": False}
  return new


def test_the_fixtures_configs_are_todays_configs():
  # Built today, the same configs: their config.json is the one the old code wrote, under the
  # old names, so the work directory's identity check accepts them as the same runs. They
  # predate config.train.rng: they drew with threefry, and a resume goes on with it.
  for name, config in (("interrupted", tiny_config()), ("finished", _finished_config())):
    old = json.loads((FIXTURES / name / "config.json").read_text())
    assert ALIASES.lacking(old) == {"train.rng": "threefry2x32"}
    stored = _in_todays_names(old)
    assert config.train.rng == "philox4x32"
    config.train.rng = "threefry2x32"
    assert workdir.config_json(config) == stored, name
    loaded = workdir.load_config(FIXTURES / name, base_config(), aliases=ALIASES)
    assert workdir.config_json(loaded) == stored, name


def _same_table(a, b, rtol=0.0):
  """Two CSV tables with the same columns and rows; numbers equal to rtol."""
  rows_a, rows_b = tables.read_csv(a), tables.read_csv(b)
  assert [list(r) for r in rows_a] == [list(r) for r in rows_b] and len(rows_a) == len(rows_b)
  for ra, rb in zip(rows_a, rows_b):
    for k in ra:
      try:
        x, y = float(ra[k]), float(rb[k])
      except ValueError:
        assert ra[k] == rb[k], k
        continue
      np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-7 if rtol else 0.0, err_msg=k)


def test_a_run_interrupted_before_the_new_layout_resumes_to_its_results(tmp_path):
  wd = _copy_fixture("interrupted", tmp_path)
  assert not (wd / "results.csv").exists()
  report = grid_study.run(tiny_config(), wd)
  assert report.trained_steps == 40  # the second group, from its checkpoint at step 20
  # As the run would have ended uninterrupted (to float tolerance: another machine's CPU).
  _same_table(wd / "results.csv", FIXTURES / "uninterrupted_results.csv", rtol=1e-5)


def test_a_finished_run_from_before_the_new_layout_re_reports_the_same_tables(tmp_path):
  wd = _copy_fixture("finished", tmp_path)
  before = (wd / "metrics.jsonl").read_text()
  report = grid_study.run(_finished_config(), wd)
  assert report.trained_steps == 0 and (wd / "metrics.jsonl").read_text() == before
  # Rebuilt on the host from metrics.jsonl and traces/: the same tables, to the last digit,
  # with the columns added since, in place.
  added = {"interference.csv": {"common_grad_strength"}, "retention.csv": {"baseline_gain"},
           "results.csv": {"diverged_step"}}
  for name in ("results.csv", "allocation.csv", "interference.csv", "learning_order.csv",
               "retention.csv"):
    now, then = tables.read_csv(wd / name), tables.read_csv(FIXTURES / "finished" / name)
    assert len(now) == len(then) and set(now[0]) - set(then[0]) == added.get(name, set()), name
    assert [[r[k] for k in r if k in then[0]] for r in now] == [list(r.values()) for r in then]
  with np.load(wd / "interference.npz") as new, \
       np.load(FIXTURES / "finished" / "interference.npz") as old:
    assert sorted(new.files) == sorted(old.files)
    for k in old.files:
      np.testing.assert_array_equal(new[k], old[k])
  summary = (wd / "summary.md").read_text()
  for section in ("## Agreement with the closed form", "## Neuron allocation",
                  "## Gradient interference", "## Injection and retention", "## Learning order"):
    assert section in summary
  for name in ("width_by_frequency", "learning_curves", "allocation", "retention_traces",
               "learning_order"):
    assert (wd / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def _written(wd):
  """Every top-level entry of a work directory, and every file under figures/."""
  return ({p.name for p in wd.iterdir()}
          | {f"figures/{p.name}" for p in (wd / "figures").iterdir()})


def test_every_file_a_grid_run_writes_is_declared(reference, mechanism_run):
  declared = set(grid_study.FILES) | set(workdir.BASE_FILES)
  for wd in (reference[0], mechanism_run[0]):
    undeclared = _written(wd) - declared
    assert not undeclared, undeclared
  assert "allocation.csv" in _written(mechanism_run[0])  # the mechanism run wrote its tables
