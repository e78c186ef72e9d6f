"""Tests of rare_tasks/synthetic/report/allocation.py through a mechanism run: the table's columns
and rows, shares that sum to the width, the figure and section, device count and resume."""

import pytest

from rare_tasks.core import tables
from rare_tasks.synthetic.report import allocation
from tests.synthetic.report.conftest import assert_same_measurements


def test_a_row_per_cell_evaluation_and_task(mechanism_run):
  wd, _ = mechanism_run
  rows = tables.read_csv(wd / "allocation.csv")
  assert list(rows[0]) == list(allocation.COLUMNS) == [
      "width", "rare_frequency", "seed", "step", "task", "effective_neurons", "dominant_neurons",
      "is_rare", "gap", "cell"]
  assert len(rows) == 8 * 4 * 4  # cells x evaluations (0, 16, 32, 48) x tasks
  assert (wd / "figures" / "allocation.png").read_bytes()[:4] == b"\x89PNG"
  assert "## Neuron allocation" in (wd / "summary.md").read_text()


def test_allocation_shares_sum_to_the_width(mechanism_run):
  wd, _ = mechanism_run
  totals = {}
  for r in tables.read_csv(wd / "allocation.csv"):
    key = (r["cell"], r["step"], int(r["width"]))
    totals[key] = totals.get(key, 0.0) + float(r["effective_neurons"])
  for (_, _, width), total in totals.items():
    assert total == pytest.approx(width, rel=1e-5)


def test_one_device_equals_eight_and_resume_equals_uninterrupted(mechanism_run,
                                                                  mechanism_run_one_device,
                                                                  mechanism_run_resumed):
  assert_same_measurements("allocation.csv", ("effective_neurons",), mechanism_run[0],
                           mechanism_run_one_device, mechanism_run_resumed)
