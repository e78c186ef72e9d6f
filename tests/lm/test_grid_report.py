"""The injection study's report on planted records: results rows, learned / generalised and the
first learned step, the science read from them (smallest learned frequency per size, sizes that
differ, monotonicity, learning order), the gap table and the figures."""

import numpy as np
import pytest

from rare_tasks.core import tables
from rare_tasks.lm import grid, grid_config, grid_report, tasks

# Planted final train accuracies per (size, frequency): the large size learns 0.01 and 0.004,
# the small one only 0.01.
ACCURACY = {("cpu_d16", 0.01): 0.95, ("cpu_d16", 0.004): 0.5, ("cpu_d16", 0.001): 0.0,
            ("cpu_d64", 0.01): 1.0, ("cpu_d64", 0.004): 0.92, ("cpu_d64", 0.001): 0.1}
# The step each frequency first reaches 0.9 (where it does): higher frequency first.
FIRST = {("cpu_d16", 0.01): 20, ("cpu_d64", 0.01): 10, ("cpu_d64", 0.004): 20}


def _config():
  c = grid_config.base_config()
  c.grid.update(dict(size=("cpu_d16", "cpu_d64"), frequency=(0.01, 0.004, 0.001), gap=(1,),
                     task=("comparison",), seed=(0,)))
  c.train.steps = 30
  c.eval_every = 10
  return c


def _records(c, cells, first=FIRST):
  out = []
  for size, size_cells in cells.items():
    for cell in size_cells:
      final = ACCURACY.get((size, cell.frequency), 0.0)
      for step in (10, 20, 30):
        reached = (size, cell.frequency) in first and step >= first[(size, cell.frequency)]
        acc = final if step == 30 else (0.9 if reached else 0.1)
        out.append(cell.record() | {"step": step, "val_loss": 3.0, "val_gap": 1.0,
                                    "comparison_train_loss": 1.0 - acc,
                                    "comparison_train_accuracy": acc,
                                    "comparison_test_loss": 2.0,
                                    "comparison_test_accuracy": acc / 2})
  return out


INFO = {"sizes": {"cpu_d16": {"params": {"total": 100}, "tokens_per_step": 64 * 32},
                  "cpu_d64": {"params": {"total": 1000}, "tokens_per_step": 64 * 32}}}


def test_result_rows_say_what_each_cell_learned_and_when():
  c = _config()
  cells = grid.cells(c)
  rows = grid_report.result_rows(c, INFO, cells, _records(c, cells))
  assert len(rows) == 2 * (3 + 1)
  by = {(r["size"], r["frequency"]): r for r in rows}
  assert by[("cpu_d64", 0.004)]["learned"] and not by[("cpu_d16", 0.004)]["learned"]
  assert by[("cpu_d64", 0.004)]["first_learned_step"] == 20
  assert by[("cpu_d16", 0.001)]["first_learned_step"] == ""
  assert not any(r["generalised"] for r in rows)  # test accuracy is half the train's
  assert by[("cpu_d16", 0.0)]["params"] == 100 and by[("cpu_d16", 0.0)]["gap"] == 1


def test_science_on_planted_results():
  c = _config()
  cells = grid.cells(c)
  rows = grid_report.result_rows(c, INFO, cells, _records(c, cells))
  found = grid_report.science(c, rows, "comparison", list(c.grid.size),
                              {"cpu_d16": 100, "cpu_d64": 1000})
  assert found["smallest_learned"] == {"cpu_d16": 0.01, "cpu_d64": 0.004}
  assert found["only_largest"] == [0.004]
  assert found["monotone"]
  # Pairs: d16 (0.01 learned, 0.004 and 0.001 not): 2; d64: (0.01, 0.004) learned in order,
  # and both before 0.001: 3. All five follow the frequency order.
  assert found["order_agreement"] == 1.0 and found["order_pairs"] == 5


def test_a_learning_order_against_frequency_is_counted():
  c = _config()
  cells = grid.cells(c)
  backwards = {**FIRST, ("cpu_d64", 0.01): 30, ("cpu_d64", 0.004): 10}
  rows = grid_report.result_rows(c, INFO, cells, _records(c, cells, backwards))
  found = grid_report.science(c, rows, "comparison", list(c.grid.size),
                              {"cpu_d16": 100, "cpu_d64": 1000})
  assert found["order_agreement"] == pytest.approx(4 / 5)


def test_a_smallest_learned_frequency_that_rises_with_size_is_reported():
  c = _config()
  cells = grid.cells(c)
  rows = grid_report.result_rows(c, INFO, cells, _records(c, cells))
  found = grid_report.science(c, rows, "comparison", list(c.grid.size),
                              {"cpu_d16": 1000, "cpu_d64": 100})  # sizes swapped
  assert not found["monotone"] and found["only_largest"] == []


def test_write_draws_the_figures_and_the_gap_table(tmp_path):
  c = _config()
  c.grid.gap = (1, 4)
  c.injection.schedule = "bursts"
  cells = grid.cells(c)
  summary = grid_report.write(tmp_path, c, INFO, cells, _tasks(), _records(c, cells))
  for name in ("heatmap_comparison", "task_loss_comparison", "gap_comparison"):
    assert (tmp_path / f"figures/{name}.png").read_bytes()[:4] == b"\x89PNG"
  text = (tmp_path / "summary.md").read_text()
  assert "Gap sweep at matched frequency" in text and "| cpu_d64 | 0.004 | 4 |" in text
  assert summary["comparison"]["smallest_learned"]["cpu_d64"] == 0.004
  rows = tables.read_csv(tmp_path / "results.csv")
  assert tuple(rows[0]) == grid_report.COLUMNS and len(rows) == 2 * (3 * 2 + 1)
  assert np.isfinite(float(rows[0]["train_loss"]))


def _tasks():
  return tasks.make_tasks(("comparison",), 4, 64, seed=0)
