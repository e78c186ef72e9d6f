"""What every section of the injection study's report reads: the run's config, run.json, cells,
tasks, records and results.csv's rows.

Built once after training, from metrics.jsonl and the rows built from it
(`results_table.result_rows`); a section never reads the work directory's files back itself.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from rare_tasks.core import tables, workdir
from rare_tasks.lm import grid
from rare_tasks.lm.grid import Cell
from rare_tasks.lm.tasks import Task

FIGURES = workdir.FIGURES_DIR


@dataclasses.dataclass(frozen=True)
class InjectionRun:
  """A finished (or partly trained) injection study.

  Attributes:
    config: the run's resolved config.
    wd: its work directory.
    info: run.json: per size its parameters and tokens per step, the source, the tasks...
    cells: size -> that size's cells, in grid order.
    task_list: the injected tasks, in config order.
    records: every metrics.jsonl record, in any order.
    rows: results.csv's rows (one per finished cell and task it injects, numbers as numbers).
    gradients: every gradients.jsonl record (the gradient decomposition; empty without it).
  """

  config: ml_collections.ConfigDict
  wd: Path
  info: dict[str, Any]
  cells: dict[str, list[Cell]]
  task_list: tuple[Task, ...]
  records: list[dict[str, Any]]
  rows: list[dict[str, Any]]
  gradients: list[dict[str, Any]] = dataclasses.field(default_factory=list)

  @functools.cached_property
  def cells_by_index(self) -> dict[int, Cell]:
    """Every cell by its index."""
    return {cell.index: cell for cs in self.cells.values() for cell in cs}

  @functools.cached_property
  def histories(self) -> dict[int, list[dict[str, Any]]]:
    """Each cell's records in step order, by cell index."""
    return histories(self.records)

  @functools.cached_property
  def sizes(self) -> list[str]:
    """The grid's sizes, in config order."""
    return list(self.config.grid.size)

  @functools.cached_property
  def lengths(self) -> tuple[int, ...]:
    """The run lengths in steps (grid.steps, or train.steps alone)."""
    return grid.lengths(self.config)

  @functools.cached_property
  def params(self) -> dict[str, int]:
    """Each size's parameter count."""
    return {s: self.info["sizes"][s]["params"]["total"] for s in self.sizes}

  def baseline(self, task: str, split: str) -> float:
    """The task's count baseline of choice accuracy on a split (results.csv carries it on
    every row of the task); NaN when no cell finished."""
    return next((r[f"{split}_choice_baseline"] for r in self.rows if r["task"] == task),
                float("nan"))

  def history_means(self, task: str, size: str, steps: int, key: str
                    ) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """frequency -> (evaluated steps (E,), seed means of record `key` (E,)) of one size and
    length at the grid's first gap, the control at frequency 0 included."""
    gap0 = self.config.grid.gap[0]
    points = [{"frequency": cell.frequency, "step": r["step"],
               "value": tables.number(r.get(key))}
              for cell in self.cells[size] if cell.steps == steps
              and (cell.is_control or (task in cell.tasks and cell.gap == gap0))
              for r in self.histories.get(cell.index, [])]
    means = tables.mean_by(points, ("frequency", "step"), "value")
    out = {}
    for f in sorted({k[0] for k in means}):
      at = sorted(k[1] for k in means if k[0] == f)
      out[f] = (np.array(at), np.array([means[(f, s)] for s in at]))
    return out

  def figure(self, kind: str, task: str) -> str:
    """The work-directory path of a task's figure of one kind: figures/<kind>_<task>.png."""
    return f"{FIGURES}/{kind}_{task}.png"


def histories(records: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
  """Each cell's records in step order, by cell index."""
  out: dict[int, list[dict[str, Any]]] = {}
  for r in sorted(records, key=lambda r: (r["cell"], r["step"])):
    out.setdefault(r["cell"], []).append(r)
  return out


def seed_mean(rows: list[dict[str, Any]], task: str, gap: int, column: str,
              sizes: Sequence[str], freqs: Sequence[float], steps: int | None = None
              ) -> np.ndarray:
  """(sizes, frequencies) seed means of a column at one gap (the control at frequency 0 for
  every gap) and, when given, one run length; NaN where no cell finished."""
  means = tables.mean_by([r for r in rows if r["task"] == task
                          and (r["gap"] == gap or r["frequency"] == 0)
                          and (steps is None or r["steps"] == steps)],
                         ("size", "frequency"), column)
  return np.array([[means.get((s, f), np.nan) for f in freqs] for s in sizes], float)
