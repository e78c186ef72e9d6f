"""What the report tests share: runs made of records written by hand, and a check of a mechanism
table across device counts and a resume."""

import numpy as np

from rare_tasks.core import tables, workdir
from rare_tasks.synthetic import grid_study
from rare_tasks.synthetic.config import base_config
from rare_tasks.synthetic.grid import expand, group_cells
from rare_tasks.synthetic.report import results
from rare_tasks.synthetic.report.results_view import GridResults
from rare_tasks.synthetic.tasks import task_of


def hand_made_run(tmp_path, family="linear_mixture"):
  """A GridResults of hand-written records (no training): widths 1 and 6 x rare frequencies
  0.05 and 0.2. Linear: 3 tasks of 2 features, every FVU at the closed-form optimum except task
  2 of the (width 1, frequency 0.05) cell, measured at 0.1 (learned where the optimum is not);
  the exact FVU of cell 3 sits 0.01 below the optimum. Sparse parity: 3 tasks, losses by hand."""
  c = base_config()
  c.grid.width, c.grid.frequency, c.grid.seed = (1, 6), (0.05, 0.2), (0,)
  c.train.steps = 10
  if family == "linear_mixture":
    c.task.num_tasks, c.task.block_size = 3, 2
  else:
    c.task.name, c.model.name, c.model.activation = "sparse_parity", "mlp", "relu"
    c.task.num_tasks, c.task.num_bits = 3, 6
    c.learned.threshold = 0.1
  task = task_of(c)
  cells = expand(c, task)
  preds = None if task.theory is None else {cl.index: task.theory.predict(cl) for cl in cells}
  metrics = []
  for cl in cells:
    for step in (0, 10):
      if preds is None:
        loss = [0.05, 0.5 if cl.values["width"] == 1 else 0.05, 0.9]
        metrics.append({"cell": cl.index, "step": step, "loss": loss, "accuracy": [0.9] * 3})
        continue
      fvu = preds[cl.index].fvu.copy()
      if cl.values["width"] == 1 and cl.values["rare_frequency"] == 0.05:
        fvu[2] = 0.1
      pop = preds[cl.index].fvu - (0.01 if cl.index == 3 else 0.0)
      metrics.append({"cell": cl.index, "step": step, "fvu": list(map(float, fvu)),
                      "population_fvu": list(map(float, pop)), "feature_capture": [0.5] * 3})
  workdir.prepare(tmp_path, c, False, defaults=base_config(), run_files=grid_study.FILES)
  rows = results.build_results(c, task, cells, preds, metrics)
  return GridResults(c, tmp_path, task, cells, group_cells(cells), preds, metrics, rows, 20, 1.0)


def assert_same_measurements(table, columns, wd, one_device, resumed):
  """A table of the mechanism run agrees on 1 and 8 devices (to float tolerance) and is the same
  file, to the last digit, after a kill and a resume."""
  one, eight = (tables.read_csv(d / table) for d in (one_device, wd))
  assert len(one) == len(eight)
  for column in columns:
    np.testing.assert_allclose([float(r[column]) for r in one], [float(r[column]) for r in eight],
                               rtol=1e-4, atol=1e-6, err_msg=column)
  assert (resumed / table).read_text() == (wd / table).read_text()
