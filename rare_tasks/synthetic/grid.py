"""Expanding a config's grid into cells, and cells into vmappable ensembles.

A cell carries everything derived from its grid values, computed once where it is made: its task
mixture, its burst size (bursts injection) and its values as metrics.jsonl records them.

Cells that share every static (shape-giving) field form one group, trained as one compiled
ensemble. Inside a group the members are laid out as (streams, members): a stream is a data stream
(cells with the same seed and spectrum see the same inputs, step by step), and the members of a
stream differ only in values that do not change the inputs (frequency, learning rate, exponent,
injection gap).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import ml_collections
import numpy as np

from rare_tasks import injection
from rare_tasks.core import tensorboard
from rare_tasks.synthetic.config import CELL_VALUES, GRID_AXES, RECORDED_AS, grid_values
from rare_tasks.synthetic.tasks import TaskFamily, task_of

STATIC_AXES = ("width", "activation", "num_hidden_layers")
STREAM_AXES = ("seed", "beta")
MEMBER_AXES = ("rare_frequency", "common_exponent", "learning_rate", "gap")


@dataclasses.dataclass(frozen=True)
class Cell:
  """One grid cell: its index in the grid's product order and every per-cell value."""

  index: int
  # Every axis of GRID_AXES, grid value or the config's own, named as records name it
  # (CELL_VALUES: the frequency axis is "rare_frequency").
  values: dict[str, Any]
  mixture: tuple[float, ...] = ()  # task probabilities pi (K,)
  burst_size: int = 0  # examples of each rare task per burst (bursts injection), else 0
  record: dict[str, Any] = dataclasses.field(default_factory=dict)  # values as JSON

  @property
  def label(self) -> str:
    """The cell in words: its index and its values as records name them."""
    return f"cell {self.index} (" + ", ".join(f"{k}={v}" for k, v in self.record.items()) + ")"

  @property
  def task_frequencies(self) -> np.ndarray:
    """The mixture as a float64 array (K,): the frequency of each task."""
    return np.asarray(self.mixture, dtype=np.float64)

  @property
  def static_key(self) -> tuple:
    return tuple(hashable(self.values[a]) for a in STATIC_AXES)

  @property
  def stream_key(self) -> tuple:
    return tuple(hashable(self.values[a]) for a in STREAM_AXES)

  @property
  def member_key(self) -> tuple:
    return tuple(hashable(self.values[a]) for a in MEMBER_AXES)


@dataclasses.dataclass(frozen=True)
class Group:
  """Cells of one shape as a (streams x members) layout: cells[s][p]."""

  name: str
  cells: tuple[tuple[Cell, ...], ...]

  @property
  def static(self) -> dict[str, Any]:
    return {a: self.cells[0][0].values[a] for a in STATIC_AXES}

  @property
  def num_streams(self) -> int:
    return len(self.cells)

  @property
  def num_members(self) -> int:
    return len(self.cells[0])

  def flat_cells(self) -> list[Cell]:
    return [c for row in self.cells for c in row]


def hashable(v: Any) -> Any:
  """A grid value as a dict key: a list (a per-task value read from JSON) as a tuple."""
  return tuple(v) if isinstance(v, list) else v


def _get(config: ml_collections.ConfigDict, path: str) -> Any:
  node = config
  for part in path.split("."):
    node = node[part]
  return node


def make_cell(index: int, values: dict[str, Any], task: TaskFamily,
              config: ml_collections.ConfigDict) -> Cell:
  """The cell of grid values `values` (every axis), with its derived quantities."""
  values = {a: hashable(v) for a, v in values.items()}
  mixture = task.mixture(values["rare_frequency"], values["common_exponent"])
  burst = 0
  if config.injection.schedule == "bursts":
    burst = injection.burst_size(values["rare_frequency"], values["gap"],
                                 config.train.batch_size, task.num_rare)
  record = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
  return Cell(index, values, tuple(float(p) for p in mixture), burst, record)


def expand(config: ml_collections.ConfigDict, task: TaskFamily | None = None) -> list[Cell]:
  """Every cell of the grid: the product of the axes, the last fastest, in alphabetical order of
  the names cells give them (the frequency axis as "rare_frequency", so that cells are numbered
  as before the axis was renamed).

  `task` is the config's task family (built from the config when not given).
  """
  task = task_of(config) if task is None else task
  grid = {RECORDED_AS.get(axis, axis): values for axis, values in grid_values(config).items()}
  base = {RECORDED_AS.get(axis, axis): _get(config, path) for axis, path in GRID_AXES.items()}
  axes = sorted(grid)
  return [make_cell(i, {**base, **dict(zip(axes, combo))}, task, config)
          for i, combo in enumerate(itertools.product(*(grid[a] for a in axes)))]


def run_names(cells: list[Cell]) -> dict[int, str]:
  """Each cell's TensorBoard run directory by index: its width, frequency and seed, then every
  other grid value that differs between the cells ('width=8,frequency=0.01,seed=0,gap=4')."""
  always = ("width", RECORDED_AS["frequency"], "seed")
  names = tensorboard.run_names([c.record for c in cells], always,
                                [v for v in CELL_VALUES if v not in always],
                                {v: k for k, v in RECORDED_AS.items()})
  return {c.index: name for c, name in zip(cells, names)}


def group_cells(cells: list[Cell]) -> list[Group]:
  """Groups by static key (ordered by width), each laid out as streams x members."""
  by_static: dict[tuple, list[Cell]] = {}
  for c in cells:
    by_static.setdefault(c.static_key, []).append(c)
  groups = []
  for key in sorted(by_static, key=lambda k: (k[0], str(k[1]), k[2])):
    members = by_static[key]
    streams: dict[tuple, list[Cell]] = {}
    for c in members:
      streams.setdefault(c.stream_key, []).append(c)
    rows = tuple(tuple(sorted(r, key=lambda c: c.index)) for r in streams.values())
    member_keys = [tuple(c.member_key for c in r) for r in rows]
    if len(set(member_keys)) != 1:
      raise ValueError("grid cells do not form a product of streams and members")
    static = dict(zip(STATIC_AXES, key))
    name = "width{width}_{activation}_depth{num_hidden_layers}".format(**static)
    groups.append(Group(name, rows))
  return groups
