"""results.csv: one row per cell and task it injects (and per task for each control, at
frequency 0), at the last step: the LABEL loss and accuracy on the train and test instances,
whether the cell learned (train accuracy >= learned.threshold at the end) and generalised (test
accuracy) it, and the first evaluated step at which it had learned it."""

from __future__ import annotations

from typing import Any

import ml_collections

from rare_tasks.core import tables
from rare_tasks.core.report import Section
from rare_tasks.lm.grid import Cell
from rare_tasks.lm.report.injection_view import InjectionRun, histories

RESULTS_FILE = "results.csv"
FILES = (RESULTS_FILE,)
COLUMNS = ("size", "params", "task", "frequency", "gap", "seed", "train_loss", "train_accuracy",
           "test_loss", "test_accuracy", "learned", "generalised", "first_learned_step")


def applies(run: InjectionRun) -> bool:
  return True


def result_rows(c: ml_collections.ConfigDict, info: dict[str, Any], cells: dict[str, list[Cell]],
                records: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """The rows of results.csv, from every cell's records (cells without a final record are
  left out)."""
  by_cell = histories(records)
  rows = []
  for size, size_cells in cells.items():
    params = info["sizes"][size]["params"]["total"]
    for cell in size_cells:
      history = by_cell.get(cell.index, [])
      if not history or history[-1]["step"] != c.train.steps:
        continue
      for task in (cell.tasks or tuple(c.grid.task)):
        last = history[-1]
        learned_at = [r["step"] for r in history
                      if r[f"{task}_train_accuracy"] >= c.learned.threshold]
        rows.append({
            "size": size, "params": params, "task": task, "frequency": cell.frequency,
            "gap": cell.gap, "seed": cell.seed,
            **{k: last[f"{task}_{k}"] for k in ("train_loss", "train_accuracy", "test_loss",
                                                 "test_accuracy")},
            "learned": last[f"{task}_train_accuracy"] >= c.learned.threshold,
            "generalised": last[f"{task}_test_accuracy"] >= c.learned.threshold,
            "first_learned_step": learned_at[0] if learned_at else ""})
  return rows


def section(run: InjectionRun) -> Section:
  """Writes results.csv; returns the summary's closing line, which points to it."""
  tables.write_csv(run.wd / RESULTS_FILE, COLUMNS, run.rows)
  lines = [f"Per cell and task: [{RESULTS_FILE}]({RESULTS_FILE}); every injected row: "
           "`injections/<cell>.csv`.", ""]
  return Section(lines, {}, FILES, {RESULTS_FILE: "one row per cell and task"})
