"""results.csv: one row per cell and task it injects (and per task for each control, at
frequency 0), at the cell's last step: the LABEL loss, accuracy and choice accuracy on each
split with the count baseline beside it, the format rate, the exposures of each train
instance, the train and test_unseen accuracy and choice accuracy averaged over the last
`learned.last_evals` evaluations (mean_<split>_<score>), whether the cell learned the task
(its mean train score named by learned.criterion >= learned.threshold) and generalised it (the
same on test_unseen; blank where that was not measured), the first evaluated step at which that
mean, over the evaluations up to it, reached the threshold, and whether it diverged (a
non-finite loss: counted as not learned).

A run written before choice accuracy, format rate and the mirror splits were measured has
NaN in their columns (`not_measured` says so).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from rare_tasks.core import tables
from rare_tasks.core.report import Section
from rare_tasks.lm import count_baseline
from rare_tasks.lm.grid import Cell
from rare_tasks.lm.report.injection_view import InjectionRun, histories
from rare_tasks.lm.task_metrics import CRITERIA
from rare_tasks.lm.tasks import Task

RESULTS_FILE = "results.csv"
FILES = (RESULTS_FILE,)
SPLITS = ("train", "test", "test_unseen", "test_mirror")
MEASURED = ("loss", "accuracy", "choice_accuracy")
MEAN_SPLITS = ("train", "test_unseen")
COLUMNS = ("size", "params", "task", "steps", "frequency", "gap", "seed", "exposures",
           *(f"{s}_{m}" for s in SPLITS for m in (*MEASURED, "choice_baseline")),
           "format_rate", *(f"mean_{s}_{m}" for s in MEAN_SPLITS for m in CRITERIA), "learned",
           "generalised", "first_learned_step", "diverged")
# A record's key whose absence marks a run from before choice accuracy was measured.
NEW_KEY = "{task}_train_choice_accuracy"


def applies(run: InjectionRun) -> bool:
  return True


def _value(record: dict[str, Any], key: str) -> float:
  return tables.number(record.get(key))


def score(history: Sequence[dict[str, Any]], key: str, last: int) -> float:
  """The mean of `key` over the last `last` records of a history (NaN where unmeasured)."""
  return float(np.mean([_value(r, key) for r in history[-last:]]))


def result_rows(c: ml_collections.ConfigDict, info: dict[str, Any], cells: dict[str, list[Cell]],
                records: list[dict[str, Any]], task_list: Sequence[Task]
                ) -> list[dict[str, Any]]:
  """The rows of results.csv, from every cell's records (cells without a final record are
  left out)."""
  by_cell = histories(records)
  baselines = {t.name: count_baseline.choice_baselines(t) | {
      "test": count_baseline.choice_baseline(t, t.test)} for t in task_list}
  train_size = {t.name: len(t.train) for t in task_list}
  criterion, threshold, k = c.learned.criterion, c.learned.threshold, c.learned.last_evals
  rows = []
  for size, size_cells in cells.items():
    params = info["sizes"][size]["params"]["total"]
    for cell in size_cells:
      history = by_cell.get(cell.index, [])
      if not history or history[-1]["step"] != cell.steps:
        continue
      last = history[-1]
      for task in (cell.tasks or tuple(c.grid.task)):
        losses = [_value(last, f"{task}_train_loss"), _value(last, "val_loss")]
        diverged = not all(math.isfinite(x) for x in losses)
        key = f"{task}_train_{criterion}"
        reached = [history[i]["step"] for i in range(len(history))
                   if score(history[:i + 1], key, k) >= threshold]
        row = {"size": size, "params": params, "task": task, "steps": cell.steps,
               "frequency": cell.frequency, "gap": cell.gap, "seed": cell.seed,
               "exposures": _value(last, "instances_per_task") / train_size[task]}
        for split in SPLITS:
          for m in MEASURED:
            row[f"{split}_{m}"] = _value(last, f"{task}_{split}_{m}")
          row[f"{split}_choice_baseline"] = baselines[task][split]
        row["format_rate"] = _value(last, f"{task}_train_format_rate")
        for split in MEAN_SPLITS:
          for m in CRITERIA:
            row[f"mean_{split}_{m}"] = score(history, f"{task}_{split}_{m}", k)
        row["learned"] = bool(not diverged and row[f"mean_train_{criterion}"] >= threshold)
        unseen = row[f"mean_test_unseen_{criterion}"]
        row["generalised"] = ("" if math.isnan(unseen) and not diverged
                              else bool(not diverged and unseen >= threshold))
        row["first_learned_step"] = reached[0] if reached else ""
        row["diverged"] = diverged
        rows.append(row)
  return rows


def not_measured(run: InjectionRun) -> list[str]:
  """The tasks whose records lack choice accuracy (a run from before it was measured)."""
  return [t.name for t in run.task_list
          if run.records and not any(NEW_KEY.format(task=t.name) in r for r in run.records)]


def section(run: InjectionRun) -> Section:
  """Writes results.csv; returns the summary's closing line, which points to it."""
  tables.write_csv(run.wd / RESULTS_FILE, COLUMNS, run.rows)
  lines = [f"Per cell and task: [{RESULTS_FILE}]({RESULTS_FILE}); every injected row: "
           "`injections/<cell>.csv`.", ""]
  return Section(lines, {}, FILES, {RESULTS_FILE: "one row per cell and task"})
