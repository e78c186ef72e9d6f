"""Tests of rare_tasks/results_table.py: rows from final metrics beside the closed form."""

import pytest

from rare_tasks import results_table, theory
from rare_tasks.config_schema import base_config
from rare_tasks.grid import expand
from rare_tasks.tasks import LinearMixture


def _setup():
  c = base_config()
  c.task.num_tasks, c.task.block_size = 3, 2
  c.grid.width, c.grid.rare_frequency, c.grid.seed = (1, 6), (0.1,), (0,)
  c.train.steps = 10
  task = LinearMixture(3, 2)
  cells = expand(c)
  preds = {cl.index: theory.predict(task.mixture(0.1, 1.0), task.spectrum(1.0),
                                    cl.values["width"]) for cl in cells}
  return c, task, cells, preds


def _record(cell, step, fvu):
  return {"cell": cell, "step": step, "fvu": fvu, "population_fvu": fvu,
          "feature_capture": [1 - v for v in fvu]}


def test_rows_use_the_final_step_and_the_prediction(tmp_path):
  c, task, cells, preds = _setup()
  metrics = [_record(0, 5, [9, 9, 9]), _record(0, 10, [0.1, 0.9, 1.0]),
             _record(1, 10, [0.0, 0.0, 0.05])]
  rows = results_table.build_results(c, task, cells, preds, metrics)
  assert len(rows) == 6
  r = rows[1]  # width 1, task 1
  assert (r["width"], r["task"], r["fvu"]) == (1, 1, 0.9)
  assert r["learned"] is False and r["feature_capture"] == pytest.approx(0.1)
  # pi = (0.9 * 2/3, 0.9 * 1/3, 0.1): width 1 keeps task 0's top feature only.
  assert rows[0]["predicted_fvu"] == pytest.approx(1 - 1 / 1.5)
  assert rows[2]["is_rare"] and rows[2]["task_frequency"] == pytest.approx(0.1)
  assert rows[2]["critical_width"] == 5  # utilities 0.6, 0.3, 0.3, 0.15, then the rare 0.1
  assert rows[5]["learned"] and rows[5]["predicted_learned"]
  results_table.write_results(tmp_path, rows)
  back = results_table.read_results(tmp_path)
  assert list(back[0]) == list(results_table.COLUMNS) and back[1]["fvu"] == "0.9"


def test_missing_final_measurement_is_an_error():
  c, task, cells, preds = _setup()
  with pytest.raises(RuntimeError, match=r"cells \[1\] have no measurement at step 10"):
    results_table.build_results(c, task, cells, preds, [_record(0, 10, [0, 0, 0])])
