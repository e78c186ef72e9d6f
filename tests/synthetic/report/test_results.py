"""Tests of rare_tasks/synthetic/report/results.py: rows from final metrics beside the closed form,
one code path for families with and without one."""

import pytest

from rare_tasks.core.workdir import WorkdirError
from rare_tasks.synthetic import theory
from rare_tasks.synthetic.config import base_config
from rare_tasks.synthetic.grid import expand
from rare_tasks.synthetic.report import results
from rare_tasks.synthetic.tasks import LinearMixture, SparseParity


def _setup():
  c = base_config()
  c.task.num_tasks, c.task.block_size = 3, 2
  c.grid.width, c.grid.frequency, c.grid.seed = (1, 6), (0.1,), (0,)
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
  rows = results.build_results(c, task, cells, preds, metrics)
  assert len(rows) == 6
  r = rows[1]  # width 1, task 1
  assert (r["width"], r["task"], r["fvu"]) == (1, 1, 0.9)
  assert r["learned"] is False and r["feature_capture"] == pytest.approx(0.1)
  # pi = (0.9 * 2/3, 0.9 * 1/3, 0.1): width 1 keeps task 0's top feature only.
  assert rows[0]["predicted_fvu"] == pytest.approx(1 - 1 / 1.5)
  assert rows[2]["is_rare"] and rows[2]["task_frequency"] == pytest.approx(0.1)
  assert rows[2]["critical_width"] == 5  # utilities 0.6, 0.3, 0.3, 0.15, then the rare 0.1
  assert rows[5]["learned"] and rows[5]["predicted_learned"]
  results.write_results(tmp_path, rows, task)
  back = results.read_results(tmp_path)
  assert list(back[0]) == [*LinearMixture.results_columns, "diverged_step"]
  assert back[1]["fvu"] == "0.9" and back[1]["diverged_step"] == ""


def test_missing_final_measurement_is_an_error():
  c, task, cells, preds = _setup()
  with pytest.raises(WorkdirError, match=r"cells \[1\] have no measurement at step 10"):
    results.build_results(c, task, cells, preds, [_record(0, 10, [0, 0, 0])])


def test_a_family_without_a_closed_form_has_its_metrics_and_complexity():
  c = base_config()
  c.task.name, c.model.name = "sparse_parity", "mlp"
  c.task.num_tasks, c.task.num_bits, c.task.parity_bits = 3, 6, (1, 2, 3)
  c.grid.width, c.grid.frequency, c.grid.seed = (4,), (0.1,), (0,)
  c.train.steps, c.learned.threshold = 10, 0.1
  task = SparseParity(3, 6, (1, 2, 3))
  (cell,) = expand(c, task)
  record = {"cell": 0, "step": 10, "loss": [0.05, 0.5, None], "accuracy": [1.0, 0.8, None]}
  rows = results.build_results(c, task, [cell], None, [record])
  assert results.columns(task) == (
      "width", "rare_frequency", "seed", "task", "task_frequency", "complexity", "loss",
      "accuracy", "learned", "is_rare", "learning_rate", "common_exponent", "activation",
      "num_hidden_layers", "cell", "step", "diverged_step")
  assert [r["complexity"] for r in rows] == [1.0, 2.0, 3.0]
  assert [r["learned"] for r in rows] == [True, False, False]  # a NaN loss is never learned
  assert "predicted_fvu" not in rows[0] and rows[2]["task_frequency"] == 0.1


def test_typed_reads_numbers_back():
  row = {"width": "4", "seed": "1", "task": "2", "cell": "7", "step": "10", "fvu": "",
         "rare_frequency": "0.1", "task_frequency": "0.25", "learned": "True"}
  out = results.typed(row, ("fvu",))
  assert (out["width"], out["cell"], out["rare_frequency"]) == (4, 7, 0.1)
  assert out["fvu"] != out["fvu"] and out["learned"] == "True"
