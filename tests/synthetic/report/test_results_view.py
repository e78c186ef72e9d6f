"""Tests of rare_tasks/synthetic/report/results_view.py: what a run's sections read."""

import numpy as np

from rare_tasks.synthetic.report import results_view
from tests.synthetic.report.conftest import hand_made_run


def test_a_run_view_of_cells_records_and_rows(tmp_path):
  run = hand_made_run(tmp_path)
  np.testing.assert_array_equal(run.widths, [1, 6])
  np.testing.assert_array_equal(run.rare_frequencies, [0.05, 0.2])
  assert run.seeds == [0]
  assert [r["step"] for r in run.by_cell[2]] == [0, 10]
  assert run.cell_at(width=6, rare_frequency=0.05).index == 1
  assert run.figure("x.png") == tmp_path / "figures" / "x.png"
  grid = results_view.rare_grid(run.rows, 2, run.widths, run.rare_frequencies, "fvu")
  assert grid.shape == (2, 2) and grid[0, 0] == 0.1


def test_averaged_over_names_the_axes_that_vary(tmp_path):
  run = hand_made_run(tmp_path)
  assert run.averaged_over() == "one cell each"
  assert results_view.averaged_over(run.cells, ("width",)) == "mean over rare_frequency"
  assert results_view.cell_key(run.cells[3]) == {"width": 6, "rare_frequency": 0.2, "seed": 0,
                                                  "gap": 1, "cell": 3}
