"""Tests of rare_tasks/synthetic/mixture_design.py: the search run end to end on the linear
setting (against the closed form, resumed after a kill), stored rounds, refusals."""

import csv
import json
import shutil

import jax
import numpy as np
import pytest

from rare_tasks import studies
from rare_tasks.core import tensorboard, workdir
from rare_tasks.core.workdir import WorkdirError
from rare_tasks.synthetic import mixture_design
from rare_tasks.synthetic.config import ConfigError, base_config
from rare_tasks.synthetic.report import mixture_design as design_report
from tests.callbacks import after_chunk
from tests.tensorboard_events import as_float32, runs, shown


def tiny_design():
  c = base_config()
  c.study = "mixture_design"
  c.task.num_tasks = 6
  c.task.block_size = 2
  c.task.common_exponent = 1.5
  c.train.learning_rate = 1e-2
  c.train.batch_size = 128
  c.train.steps = 400
  c.eval_every = 200
  c.eval_samples = 1024
  c.grid.frequency = None
  c.grid.width = (2, 4)
  c.grid.seed = (0,)
  c.design.num_candidates = 4
  c.design.refine_rounds = 1
  c.design.max_expansions = 1
  c.design.target_frequencies = (0.02, 0.13, 0.3)
  return c


def _table(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def design(tmp_path_factory):
  """The tiny design run on one device, logging to TensorBoard."""
  wd = tmp_path_factory.mktemp("design")
  c = tiny_design()
  c.log.tensorboard = True
  report = studies.run(c, wd, devices=jax.devices()[:1])
  return wd, report


def test_measured_minimum_is_near_the_closed_form_and_falls_with_width(design):
  wd, report = design
  rows = _table(wd / "mixture_design.csv")
  assert tuple(rows[0]) == design_report.COLUMNS
  measured = np.array([float(r["min_frequency"]) for r in rows])
  predicted = np.array([float(r["predicted_min_frequency"]) for r in rows])
  assert np.all(np.isfinite(measured)) and measured[1] < measured[0]
  np.testing.assert_array_less(np.abs(np.log(measured / predicted)), np.log(2))
  assert report.summary["monotone"] is True and report.summary["slope"] < 0
  # The inverse: the smallest width whose measured minimum is at or below each frequency.
  inverse = _table(wd / "min_width.csv")
  assert [float(r["frequency"]) for r in inverse] == [0.02, 0.13, 0.3]
  widths = [int(r["width"]) for r in rows]
  for r in inverse:
    f = float(r["frequency"])
    expected = min((w for w, m in zip(widths, measured) if m <= f), default=float("nan"))
    np.testing.assert_equal(float(r["min_width"]), expected)
    assert float(r["predicted_min_width"]) >= 1
  assert np.isnan(float(inverse[0]["min_width"])) and float(inverse[2]["min_width"]) == 2
  for name in ("summary.md", "figures/mixture_design.png", "rounds/round0/metrics.jsonl",
               "rounds/round0/cells.json", "config.json"):
    assert (wd / name).exists(), name


def test_each_rounds_cells_are_tensorboard_runs_in_its_round_folder(design):
  wd, _ = design
  names, points = set(), 0
  for rd in sorted((wd / mixture_design.ROUNDS_DIR).iterdir()):
    for r in workdir.read_metrics(rd):
      name = f"{rd.name}/width={r['width']},frequency={r['rare_frequency']!r},seed=0"
      names.add(name)
      fvu = shown(wd / tensorboard.DIR / name)["fvu/task_5_rare"]
      assert fvu[r["step"]] == as_float32(r["fvu"][5])
      points += 1
  assert runs(wd / tensorboard.DIR) == sorted(names) and points > len(names) > 8


def test_finished_design_reinvoked_trains_nothing(design):
  wd, _ = design
  before = (wd / "mixture_design.csv").read_text()
  # TensorBoard off now: the same run, resumed (log is no identity field)
  report = studies.run(tiny_design(), wd, devices=jax.devices()[:1])
  assert report.trained_steps == 0
  assert (wd / "mixture_design.csv").read_text() == before


def test_killed_design_resumes_to_the_same_answer(design, tmp_path):
  wd, _ = design

  def kill(group, step):
    if (tmp_path / "rounds" / "round1").exists() and step == 200:
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    studies.run(tiny_design(), tmp_path, devices=jax.devices()[:1],
                callbacks=[after_chunk(kill)])
  studies.run(tiny_design(), tmp_path, devices=jax.devices()[:1])
  assert (tmp_path / "mixture_design.csv").read_text() == (wd / "mixture_design.csv").read_text()


def test_a_stored_round_that_differs_is_refused(design, tmp_path):
  wd, _ = design
  shutil.copytree(wd, tmp_path / "copy")
  stored = tmp_path / "copy" / "rounds" / "round0" / "cells.json"
  cells = json.loads(stored.read_text())
  cells[0]["rare_frequency"] *= 1.5
  stored.write_text(json.dumps(cells))
  with pytest.raises(WorkdirError, match=r"round0 holds a search round with other cells"):
    studies.run(tiny_design(), tmp_path / "copy", devices=jax.devices()[:1])


@pytest.mark.parametrize("field, value, message", [
    ("grid.frequency", (0.1,), r"config.grid.frequency.*unset for study"),
    ("grid.learning_rate", (1e-3, 1e-2), r"config.grid.learning_rate.*unset for study"),
    ("design.max_frequency", 0.6, r"config.design.max_frequency = 0.6.*below 1 / task.num_rare"),
    ("design.min_frequency", 0.5, r"config.design.min_frequency = 0.5.*design.max_frequency"),
    ("injection.schedule", "bursts", r"config.injection.schedule = 'bursts'.*'steady'"),
    ("design.num_candidates", 1, r"config.design.num_candidates = 1.*>= 2"),
])
def test_bad_design_config_names_the_field(field, value, message, tmp_path):
  c = tiny_design()
  section, name = field.split(".")
  if field == "design.max_frequency":
    c.task.num_rare = 2
  c[section][name] = value
  with pytest.raises(ConfigError, match=message):
    studies.run(c, tmp_path)
  assert not any(tmp_path.iterdir())  # refused before writing anything


def test_every_file_a_design_writes_is_declared(design):
  wd, _ = design
  written = ({p.name for p in wd.iterdir()}
             | {f"figures/{p.name}" for p in (wd / "figures").iterdir()})
  assert written - set(mixture_design.FILES) - set(workdir.BASE_FILES) == set()
  assert {"mixture_design.csv", "min_width.csv", "rounds", "figures/mixture_design.png"} <= written
