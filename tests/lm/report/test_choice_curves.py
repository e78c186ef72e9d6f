"""Tests of rare_tasks/lm/report/choice_curves.py: the seed-mean choice accuracy per frequency
against step, the figure drawn and listed, and no figure for a run that never measured it."""

import numpy as np

from rare_tasks.lm import grid
from rare_tasks.lm.report import choice_curves
from tests.lm.report.conftest import injection_config, injection_records, injection_run


def test_the_curves_are_seed_means_by_falling_frequency_the_control_last():
  c = injection_config()
  c.grid.seed = (0, 1)
  records = injection_records(c, grid.cells(c))
  for r in records:
    r["comparison_test_unseen_choice_accuracy"] = 0.5 + 0.25 * r["seed"] + r["step"] / 100
  lines = choice_curves.curves(injection_run(c, records=records), "comparison", "cpu_d16", 30)
  assert [f for f, _, _ in lines] == [0.01, 0.004, 0.001, 0.0]
  f, steps, values = lines[0]
  np.testing.assert_array_equal(steps, [10, 20, 30])
  np.testing.assert_allclose(values, [0.725, 0.825, 0.925])


def test_the_figure_is_drawn_and_listed(tmp_path):
  (tmp_path / "figures").mkdir()
  run = injection_run(wd=tmp_path)
  assert choice_curves.applies(run)
  section = choice_curves.section(run, "comparison")
  assert section.files == ("figures/choice_comparison.png",)
  assert (tmp_path / "figures/choice_comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_a_run_that_never_measured_choice_accuracy_draws_no_curves():
  c = injection_config()
  run = injection_run(c, records=injection_records(c, grid.cells(c), choice=False))
  assert not choice_curves.applies(run)
