"""The injection study's grid expanded into cells, and the cells of one size into programs.

Per size the cells are the product frequency x gap x task x seed (with task.jointly, one cell
injects every task, so the task axis is not crossed), then one control cell per seed that
injects nothing. A cell's seed initialises its model and orders its instances; its text is the
run's (data.seed), so the cells of one size see the same text batches and differ only in what
is injected. The cells of a size train as one ensemble program, or, for a size whose ensemble
does not fit (or with mesh.fsdp > 1), one program per cell.
"""

from __future__ import annotations

import dataclasses
import itertools

import ml_collections

from rare_tasks.lm import injections, tasks

CONTROL = "control"


@dataclasses.dataclass(frozen=True)
class Cell:
  """One model of the study: its size, what it injects and its seed.

  index: its position over the whole study (sizes in grid order, then members); member: its
  position in its size's ensemble. tasks: the tasks it injects (none for a control, whose
  frequency is 0).
  """

  index: int
  member: int
  size: str
  frequency: float
  gap: int
  tasks: tuple[str, ...]
  seed: int

  @property
  def is_control(self) -> bool:
    return not self.tasks

  @property
  def name(self) -> str:
    """A readable unique name: the manifest's file name."""
    if self.is_control:
      return f"{self.size}-{CONTROL}-s{self.seed}"
    return f"{self.size}-{'+'.join(self.tasks)}-f{self.frequency:g}-g{self.gap}-s{self.seed}"

  def record(self) -> dict:
    """The cell's values as metrics.jsonl records them."""
    return {"cell": self.index, "member": self.member, "size": self.size,
            "frequency": self.frequency, "gap": self.gap, "injected": list(self.tasks),
            "seed": self.seed}


def cells(c: ml_collections.ConfigDict) -> dict[str, list[Cell]]:
  """Every cell of the grid, per size in grid order."""
  g = c.grid
  task_sets = [tuple(g.task)] if c.task.jointly else [(t,) for t in g.task]
  out, index = {}, 0
  for size in g.size:
    values = [(f, gap, t, s) for f, gap, t, s in itertools.product(g.frequency, g.gap,
                                                                   task_sets, g.seed)]
    values += [(0.0, 1, (), s) for s in g.seed]
    out[size] = []
    for member, (f, gap, t, s) in enumerate(values):
      out[size].append(Cell(index, member, size, float(f), int(gap), t, int(s)))
      index += 1
  return out


def tasks_of(c: ml_collections.ConfigDict, eos_id: int) -> tuple[tasks.Task, ...]:
  """The run's injected tasks, config.grid.task in order, from config.task."""
  return tasks.make_tasks(tuple(c.grid.task), c.task.num_symbols, c.data.vocab_size,
                          c.task.seed, eos_id, c.task.answer_tokens)


def injection_of(cell: Cell, c: ml_collections.ConfigDict, batch_size: int) -> injections.Injection:
  """The cell's injection plan at the size's batch size."""
  names = tuple(c.grid.task)
  rate = injections.rate_per_update(cell.frequency, c.injection.unit, batch_size, c.data.seq_len)
  return injections.Injection(tasks=tuple(names.index(t) for t in cell.tasks), rate=rate,
                              gap=cell.gap, withhold_steps=c.injection.withhold_steps,
                              seed=cell.seed)


def programs(size: str, size_cells: list[Cell], one_per_cell: bool) -> list[tuple[str, list[Cell]]]:
  """(name, cells) of each program that trains the size: one ensemble, or one per cell."""
  if not one_per_cell:
    return [(size, size_cells)]
  return [(f"{size}-m{cell.member}", [cell]) for cell in size_cells]
