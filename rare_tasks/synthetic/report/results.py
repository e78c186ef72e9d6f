"""results.csv: one row per (cell, task) with the final measurement, beside the closed form for a
task family that has one.

One code path for every family: a row holds the cell's grid values, the task's frequency and
complexity, the family's per-task metrics (`metric_names` and `extra_metric_names`), whether it
is learned, and the prediction's columns when there is a closed form. The columns and their
order are the family's (`TaskFamily.results_columns`), or the default below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections

from rare_tasks.core import divergence, tables, workdir
from rare_tasks.core.report import Section
from rare_tasks.core.tables import number
from rare_tasks.synthetic.grid import Cell
from rare_tasks.synthetic.tasks import TaskFamily
from rare_tasks.synthetic.theory import Prediction

RESULTS_FILE = "results.csv"
FILES = (RESULTS_FILE,)
_HEAD = ("width", "rare_frequency", "seed", "task", "task_frequency")
_TAIL = ("learned", "is_rare", "learning_rate", "common_exponent", "activation",
         "num_hidden_layers", "cell", "step")
# Numeric columns read back as numbers (read_results), beside the family's metrics.
_INTS = ("width", "seed", "task", "cell", "step")
_FLOATS = ("rare_frequency", "task_frequency")


def columns(task: TaskFamily) -> tuple[str, ...]:
  """results.csv's columns for a task family; the last, diverged_step, is the step a cell
  diverged at (rare_tasks.core.divergence), empty for a cell that trained to the end."""
  if task.results_columns:
    return task.results_columns + (divergence.FIELD,)
  return (_HEAD + (task.complexity_name,) + tuple(task.metric_names)
          + tuple(task.extra_metric_names) + _TAIL + (divergence.FIELD,))


def build_results(config: ml_collections.ConfigDict, task: TaskFamily, cells: list[Cell],
                  predictions: dict[int, Prediction] | None,
                  metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Rows from each cell's final record in metrics.jsonl (at train.steps) and its prediction."""
  steps = config.train.steps
  final = {r["cell"]: r for r in metrics if r["step"] == steps}
  missing = [c.index for c in cells if c.index not in final]
  if missing:
    raise workdir.WorkdirError(f"cells {missing[:10]} have no measurement at step {steps} in "
                               f"{workdir.METRICS_FILE}; run the study again to finish them")
  rows = []
  for c in cells:
    pred = None if predictions is None else predictions[c.index]
    rows += _cell_rows(config, task, c, final[c.index], pred)
  return rows


def _cell_rows(config: ml_collections.ConfigDict, task: TaskFamily, cell: Cell,
               record: dict[str, Any], pred: Prediction | None) -> list[dict[str, Any]]:
  v = cell.values
  complexity = task.complexity(v)
  names = tuple(task.metric_names) + tuple(task.extra_metric_names)
  rows = []
  for k in range(task.num_tasks):
    # A diverged cell's NaN measurements are null in metrics.jsonl: NaN here, never learned.
    measured = {name: number(record[name][k]) for name in names}
    row = {"width": v["width"], "rare_frequency": v["rare_frequency"], "seed": v["seed"],
           "task": k, "task_frequency": cell.mixture[k],
           task.complexity_name: float(complexity[k]), **measured,
           "learned": bool(measured[task.loss_name] <= config.learned.threshold),
           "is_rare": k in task.rare_tasks, "learning_rate": v["learning_rate"],
           "common_exponent": v["common_exponent"], "activation": v["activation"],
           "num_hidden_layers": v["num_hidden_layers"], "cell": cell.index,
           "step": config.train.steps, divergence.FIELD: record.get(divergence.FIELD)}
    if pred is not None:
      row.update({"predicted_fvu": float(pred.fvu[k]),
                  "predicted_learned": bool(pred.fvu[k] <= config.learned.threshold),
                  "critical_width": int(pred.critical_width[k])})
    rows.append(row)
  return rows


def write_results(wd: Path, rows: list[dict[str, Any]], task: TaskFamily) -> Section:
  """Writes results.csv; the Section lists it."""
  tables.write_csv(Path(wd) / RESULTS_FILE, columns(task), rows)
  return Section([], {}, FILES, {RESULTS_FILE: "one row per cell and task"})


def read_results(wd: Path) -> list[dict[str, str]]:
  """results.csv's rows as text, as written."""
  return tables.read_csv(Path(wd) / RESULTS_FILE)


def typed(row: dict[str, str], metrics: tuple[str, ...]) -> dict[str, Any]:
  """A results.csv row read back with its grid and `metrics` columns as numbers."""
  out: dict[str, Any] = dict(row)
  for k in _FLOATS + metrics:
    out[k] = float(row[k]) if row[k] != "" else float("nan")
  for k in _INTS:
    out[k] = int(row[k])
  return out
