"""What every section of a grid study's report reads: the run's cells, measurements and results.

Built once after training, from metrics.jsonl and results.csv's rows; a section never reads the
work directory's files back itself.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from rare_tasks.synthetic.config import CELL_VALUES
from rare_tasks.synthetic.grid import Cell, Group
from rare_tasks.synthetic.tasks import TaskFamily
from rare_tasks.synthetic.theory import Prediction


@dataclasses.dataclass(frozen=True)
class GridResults:
  """A finished grid run: its config, cells, predictions, every record and the results rows.

  Attributes:
    config: the run's resolved config.
    wd: its work directory.
    task: the task family.
    cells: every cell, in grid order; groups: the cells by ensemble group.
    predictions: cell index -> closed-form optimum, or None for a family without theory.
    metrics: every metrics.jsonl record, by (cell, step).
    rows: results.csv's rows (one per cell and task), numbers as numbers.
    trained_steps, wall_s: what this invocation trained, and its wall time so far.
  """

  config: ml_collections.ConfigDict
  wd: Path
  task: TaskFamily
  cells: list[Cell]
  groups: list[Group]
  predictions: dict[int, Prediction] | None
  metrics: list[dict[str, Any]]
  rows: list[dict[str, Any]]
  trained_steps: int = 0
  wall_s: float = 0.0

  @functools.cached_property
  def by_cell(self) -> dict[int, list[dict[str, Any]]]:
    """Each cell's records in step order."""
    out: dict[int, list[dict[str, Any]]] = {c.index: [] for c in self.cells}
    for r in self.metrics:
      out.setdefault(r["cell"], []).append(r)
    return out

  @functools.cached_property
  def widths(self) -> np.ndarray:
    return np.array(sorted({r["width"] for r in self.rows}))

  @functools.cached_property
  def rare_frequencies(self) -> np.ndarray:
    """The grid's rare frequencies, ascending."""
    return np.array(sorted({r["rare_frequency"] for r in self.rows}))

  @functools.cached_property
  def seeds(self) -> list[int]:
    return sorted({c.values["seed"] for c in self.cells})

  def averaged_over(self, shown: tuple[str, ...] = ("width", "rare_frequency")) -> str:
    return averaged_over(self.cells, shown)

  def cell_at(self, **values: Any) -> Cell:
    """The first cell (in grid order) with the given grid values."""
    return next(c for c in self.cells if all(c.values[k] == v for k, v in values.items()))

  def figure(self, name: str) -> Path:
    return self.wd / "figures" / name


def averaged_over(cells: list[Cell], shown: tuple[str, ...]) -> str:
  """What a number shown per `shown` axes averages over: the other grid axes that vary."""
  varying = [a for a in CELL_VALUES if a not in shown
             and len({repr(c.values[a]) for c in cells}) > 1]
  return f"mean over {', '.join(varying)}" if varying else "one cell each"


def cell_key(c: Cell) -> dict[str, Any]:
  """The columns that name a cell in the mechanism tables."""
  v = c.values
  return {"width": v["width"], "rare_frequency": v["rare_frequency"], "seed": v["seed"],
          "gap": v["gap"], "cell": c.index}


def rare_grid(rows: list[dict[str, Any]], rare_task: int, widths: np.ndarray,
              freqs: np.ndarray, column: str) -> np.ndarray:
  """Mean of `column` of the rare task's rows per (width, frequency), (W, F)."""
  out = np.full((len(widths), len(freqs)), np.nan)
  for i, w in enumerate(widths):
    for j, f in enumerate(freqs):
      out[i, j] = np.mean([r[column] for r in rows if r["task"] == rare_task
                           and r["width"] == w and r["rare_frequency"] == f])
  return out
