"""Tests of rare_tasks/lm/report/injection_view.py: histories in step order, seed means per size
and frequency with the control at every gap, and what the view derives from the run."""

import numpy as np

from rare_tasks.lm.report import injection_view
from tests.lm.report.conftest import injection_run


def test_histories_are_each_cells_records_in_step_order():
  records = [{"cell": 1, "step": 20}, {"cell": 0, "step": 20}, {"cell": 1, "step": 10},
             {"cell": 0, "step": 10}]
  out = injection_view.histories(records)
  assert list(out) == [0, 1]
  assert [[r["step"] for r in rows] for rows in out.values()] == [[10, 20], [10, 20]]


def _row(size, frequency, gap, seed, value):
  return {"size": size, "task": "t", "frequency": frequency, "gap": gap, "seed": seed,
          "train_accuracy": value}


def test_seed_mean_at_one_gap_keeps_the_control_and_leaves_nan_where_nothing_finished():
  rows = [_row("a", 0.5, 1, 0, 0.2), _row("a", 0.5, 1, 1, 0.4),  # two seeds: mean 0.3
          _row("a", 0.5, 2, 0, 1.0),  # another gap: left out
          _row("a", 0.0, 2, 0, 0.1),  # the control, whatever its gap
          _row("b", 0.5, 1, 0, 0.8), dict(_row("b", 0.5, 1, 1, 0.0), task="other")]
  means = injection_view.seed_mean(rows, "t", 1, "train_accuracy", ["a", "b"], [0.0, 0.5])
  assert means.shape == (2, 2)
  np.testing.assert_allclose(means, [[0.1, 0.3], [np.nan, 0.8]])


def test_the_view_names_sizes_params_and_figures():
  run = injection_run()
  assert run.sizes == ["cpu_d16", "cpu_d64"]
  assert run.params == {"cpu_d16": 100, "cpu_d64": 1000}
  assert run.figure("heatmap", "comparison") == "figures/heatmap_comparison.png"
  assert set(run.histories) == {c.index for cs in run.cells.values() for c in cs}
  assert all([r["step"] for r in h] == [10, 20, 30] for h in run.histories.values())
