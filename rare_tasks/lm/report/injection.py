"""The injection study's report: results.csv, the figures a reader of the paper recognises, and
summary.md, from metrics.jsonl and run.json, assembled from its sections in summary order.

summary.md: the opening (grid_setting, with the findings' headline), then per task its sections
(PER_TASK: the learned frequencies, the gap sweep when the grid has more than one gap) followed
by links to the figures they drew (the thresholds, the data-scaling control when the grid has
several run lengths, the heatmaps, the choice-accuracy and loss curves, the gap sweep when it
has several gaps, and what config.mechanism measured: the gradient decomposition, the probes
and the retention of each injection), then the background text's loss and the pointer to
results.csv.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections

from rare_tasks.core import workdir
from rare_tasks.core.report import (
    SUMMARY_FILE,
    Section,
    declared_files,
    diverged_section,
    write_summary,
)
from rare_tasks.lm.grid import Cell
from rare_tasks.lm.report import (
  background_loss,
  choice_curves,
  data_scaling,
  feature_probes,
  gap_sweep,
  gradient_interference,
  grid_setting,
  heatmaps,
  injection_retention,
  learned_frequency,
  results_table,
  task_loss_curves,
)
from rare_tasks.lm.report.injection_view import FIGURES, InjectionRun
from rare_tasks.lm.tasks import Task

# Each task's sections in summary.md order, each written when it applies to the run; the figures
# they drew are linked after them, in this order too.
PER_TASK = (learned_frequency, data_scaling, heatmaps, choice_curves, task_loss_curves, gap_sweep,
            gradient_interference, feature_probes, injection_retention)
CLOSING = (background_loss, results_table)
# Everything the report writes into the work directory (--overwrite deletes these).
FILES = declared_files((SUMMARY_FILE,), *(s.FILES for s in (grid_setting, *PER_TASK, *CLOSING)))


def write(wd: Path, c: ml_collections.ConfigDict, info: dict[str, Any],
          cells: dict[str, list[Cell]], task_list: Sequence[Task],
          records: list[dict[str, Any]], gradients: Sequence[dict[str, Any]] = ()
          ) -> dict[str, Any]:
  """Writes results.csv, the figures and summary.md; returns the headline numbers. gradients:
  the gradient decomposition's records (gradients.jsonl), when the run has them."""
  rows = results_table.result_rows(c, info, cells, records, task_list)
  run = InjectionRun(c, Path(wd), info, cells, tuple(task_list), records, rows, list(gradients))
  if workdir.is_writer():
    (run.wd / FIGURES).mkdir(parents=True, exist_ok=True)
  body = [part for t in run.task_list for part in task_sections(run, t.name)]
  numbers = {k: v for s in body for k, v in s.numbers.items()}
  found = {t.name: numbers[t.name] for t in run.task_list}  # learned_frequency's findings
  opening = grid_setting.section(run, learned_frequency.headline(found))
  closing = [s.section(run) for s in CLOSING if s.applies(run)]
  labels = {cell.index: ", ".join(f"{k}={v}" for k, v in cell.record().items() if k != "cell")
            for task_cells in cells.values() for cell in task_cells}
  diverged = diverged_section(records, "cell",
                              lambda r: f"cell {r['cell']} ({labels.get(r['cell'], '')})")
  return write_summary(wd, [opening, diverged, *body, *closing])


def task_sections(run: InjectionRun, task: str) -> list[Section]:
  """One task's sections in order, then a Section of links to the figures they drew."""
  parts = [s.section(run, task) for s in PER_TASK if s.applies(run)]
  figures = [f for p in parts for f in p.files if f.endswith(".png")]
  return parts + [Section([""] + [f"![{Path(f).stem}]({f})" for f in figures] + [""])]
