"""Expanding a config's grid into cells, and cells into vmappable ensembles.

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

from rare_tasks.config_schema import GRID_AXES, grid_values

STATIC_AXES = ("width", "activation", "num_hidden_layers")
STREAM_AXES = ("seed", "beta")
MEMBER_AXES = ("rare_frequency", "common_exponent", "learning_rate", "gap")


@dataclasses.dataclass(frozen=True)
class Cell:
  """One grid cell: its index in the grid's product order and every per-cell value."""

  index: int
  values: dict[str, Any]  # every axis of GRID_AXES, grid value or the config's own

  @property
  def static_key(self) -> tuple:
    return tuple(_hashable(self.values[a]) for a in STATIC_AXES)

  @property
  def stream_key(self) -> tuple:
    return tuple(_hashable(self.values[a]) for a in STREAM_AXES)

  @property
  def member_key(self) -> tuple:
    return tuple(_hashable(self.values[a]) for a in MEMBER_AXES)


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


def _hashable(v: Any) -> Any:
  return tuple(v) if isinstance(v, list) else v


def _get(config: ml_collections.ConfigDict, path: str) -> Any:
  node = config
  for part in path.split("."):
    node = node[part]
  return node


def expand(config: ml_collections.ConfigDict) -> list[Cell]:
  """Every cell of the grid: the product of the axes in alphabetical order, the last fastest."""
  grid = grid_values(config)
  base = {axis: _hashable(_get(config, path)) for axis, path in GRID_AXES.items()}
  axes = list(grid)
  cells = []
  for i, combo in enumerate(itertools.product(*(grid[a] for a in axes))):
    values = dict(base)
    values.update({a: _hashable(v) for a, v in zip(axes, combo)})
    cells.append(Cell(i, values))
  return cells


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
