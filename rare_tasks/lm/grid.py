"""The injection study's grid expanded into cells, and the cells of one size into programs.

Per size and run length (grid.steps, each its own warmup-cosine schedule; train.steps alone
when it is empty) the cells are the product frequency x gap x task x seed (with task.jointly,
one cell injects every task, so the task axis is not crossed), then one control cell per seed
that injects nothing. A cell's seed initialises its model and orders its instances; its text is the
run's (data.seed), so the cells of one size see the same text batches and differ only in what
is injected. The cells of a size and length train as one ensemble program, or, for a size whose
ensemble does not fit (or with mesh.fsdp > 1), one program per cell.
"""

from __future__ import annotations

import dataclasses
import itertools

import ml_collections

from rare_tasks.core import tensorboard
from rare_tasks.lm import injections, tasks

CONTROL = "control"


@dataclasses.dataclass(frozen=True)
class Cell:
  """One model of the study: its size, what it injects and its seed.

  index: its position over the whole study (sizes in grid order, then members); member: its
  position in its program's ensemble. tasks: the tasks it injects (none for a control, whose
  frequency is 0). steps: its run length; length_axis: whether the grid has a steps axis (its
  name then says the length).
  """

  index: int
  member: int
  size: str
  frequency: float
  gap: int
  tasks: tuple[str, ...]
  seed: int
  steps: int
  length_axis: bool = False

  @property
  def is_control(self) -> bool:
    return not self.tasks

  @property
  def name(self) -> str:
    """A readable unique name: the manifest's file name."""
    length = f"-t{self.steps}" if self.length_axis else ""
    if self.is_control:
      return f"{self.size}{length}-{CONTROL}-s{self.seed}"
    return (f"{self.size}{length}-{'+'.join(self.tasks)}-f{self.frequency:g}-g{self.gap}"
            f"-s{self.seed}")

  @property
  def program(self) -> str:
    """The name of the ensemble program it trains in: its size, and length on a steps axis."""
    return f"{self.size}-t{self.steps}" if self.length_axis else self.size

  def record(self) -> dict:
    """The cell's values as metrics.jsonl records them."""
    return {"cell": self.index, "member": self.member, "size": self.size,
            "frequency": self.frequency, "gap": self.gap, "injected": list(self.tasks),
            "seed": self.seed, "steps": self.steps}


def lengths(c: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The run lengths in steps: grid.steps, or train.steps alone when it is empty."""
  return tuple(int(s) for s in c.grid.steps) or (int(c.train.steps),)


def cells(c: ml_collections.ConfigDict) -> dict[str, list[Cell]]:
  """Every cell of the grid, per size in grid order (each length's cells together, lengths in
  grid order)."""
  g = c.grid
  task_sets = [tuple(g.task)] if c.task.jointly else [(t,) for t in g.task]
  axis = len(g.steps) > 0
  out, index = {}, 0
  for size in g.size:
    out[size] = []
    for steps in lengths(c):
      values = [(f, gap, t, s) for f, gap, t, s in itertools.product(g.frequency, g.gap,
                                                                     task_sets, g.seed)]
      values += [(0.0, 1, (), s) for s in g.seed]
      for member, (f, gap, t, s) in enumerate(values):
        out[size].append(Cell(index, member, size, float(f), int(gap), t, int(s), steps, axis))
        index += 1
  return out


def run_names(cells: list[Cell]) -> dict[int, str]:
  """Each cell's TensorBoard run directory by index: its size, injected tasks ('none' for a
  control), frequency and seed, then its gap and run length where they differ between the
  cells ('size=cpu_d16,task=comparison,frequency=0.002,seed=0')."""
  names = tensorboard.run_names([cell.record() for cell in cells],
                                ("size", "injected", "frequency", "seed"), ("gap", "steps"),
                                {"injected": "task"})
  return {cell.index: name for cell, name in zip(cells, names)}


def tasks_of(c: ml_collections.ConfigDict, eos_id: int) -> tuple[tasks.Task, ...]:
  """The run's injected tasks, config.grid.task in order, from config.task."""
  return tasks.make_tasks(tuple(c.grid.task), c.task.num_symbols, c.data.vocab_size,
                          c.task.seed, eos_id, c.task.answer_tokens, c.task.split)


def injection_of(cell: Cell, c: ml_collections.ConfigDict, batch_size: int) -> injections.Injection:
  """The cell's injection plan at the size's batch size."""
  names = tuple(c.grid.task)
  rate = injections.rate_per_update(cell.frequency, c.injection.unit, batch_size, c.data.seq_len)
  return injections.Injection(tasks=tuple(names.index(t) for t in cell.tasks), rate=rate,
                              gap=cell.gap, withhold_steps=c.injection.withhold_steps,
                              seed=cell.seed)


def programs(length_cells: list[Cell], one_per_cell: bool) -> list[tuple[str, list[Cell]]]:
  """(name, cells) of each program that trains the cells of one size and length: one ensemble,
  or one per cell."""
  name = length_cells[0].program
  if not one_per_cell:
    return [(name, length_cells)]
  return [(f"{name}-m{cell.member}", [cell]) for cell in length_cells]
