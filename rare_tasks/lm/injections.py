"""Which injected instance goes into which training row at which update, for every cell, and the
manifest that records it.

A cell injects each of its tasks at a long-run frequency in a declared unit ("per_token":
instances per trained token, B x seq_len per update; "per_sequence": instances per row) on the
shared schedule of `rare_tasks.injection`: "steady" (gap 1) or "bursts" (every gap-th update
carries gap times the instances per update), after `withhold_steps` updates without any. The
counts are exact (spread deterministically over the bursts), so the long-run frequency is exact.

The j-th instance a cell injects of a task is the train instance at position j mod n of the
seeded permutation number j // n of the train split (n instances): every epoch of the split is a
fresh permutation, and a cell at a lower frequency sees a prefix of the same sequence (common
random numbers across frequencies). At update t the instances of a cell fill its rows 0, 1, ...
in task order: TOK1 TOK2 LABEL EOS replace each such row's first 4 tokens.

Each cell's manifest (injections/<cell>.csv) lists every injected row: update (the 0-based
index of the batch), row, instance (a row of the task's instance table: a * p + b) and task.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import jax
import numpy as np

from rare_tasks import injection
from rare_tasks.core import workdir
from rare_tasks.core.config import check
from rare_tasks.lm.tasks import INSTANCE, Task

UNITS = ("per_token", "per_sequence")
SCHEDULES = ("steady", "bursts")
INJECTED_TOKENS = INSTANCE + 1  # TOK1 TOK2 LABEL EOS
KEEP = -1  # an injected token that leaves the row's own token in place
MANIFEST_DIR = "injections"
MANIFEST_COLUMNS = ("step", "row", "instance", "task")


@dataclasses.dataclass(frozen=True)
class Injection:
  """What one cell injects: the run's tasks it injects (indices), the long-run instances of
  each per update (an exact fraction; 0 for a control), its gap, withheld updates and seed."""

  tasks: tuple[int, ...]
  rate: Fraction
  gap: int = 1
  withhold_steps: int = 0
  seed: int = 0


def rate_per_update(frequency: float, unit: str, batch_size: int, seq_len: int) -> Fraction:
  """Instances of one task per update at `frequency` in `unit`, as an exact fraction."""
  f = injection.exact_rate(frequency)
  if unit == "per_token":
    return f * batch_size * seq_len
  if unit == "per_sequence":
    return f * batch_size
  raise ValueError(f"unknown unit {unit!r}: allowed: one of {list(UNITS)}")


def check_rows(frequencies: Sequence[float], gaps: Sequence[int], unit: str, batch_size: int,
               seq_len: int, tasks_per_cell: int) -> None:
  """ConfigError unless every burst of every cell fits in the batch's rows, one instance per
  row: naming grid.frequency when even gap 1 does not fit, else grid.gap."""
  tokens = f" x seq_len {seq_len}" if unit == "per_token" else ""
  for f in frequencies:
    steady = injection.largest_burst(rate_per_update(f, unit, batch_size, seq_len), 1)
    highest = _max_frequency(unit, batch_size, seq_len, tasks_per_cell)
    check(steady * tasks_per_cell <= batch_size, "grid.frequency", f,
          f"frequencies {unit} of at most {highest:.6g}: "
          f"{f} x batch_size {batch_size}{tokens} needs {steady} instance(s) of each of "
          f"{tasks_per_cell} task(s) per update, and one row holds one instance")
    for g in gaps:
      burst = injection.largest_burst(rate_per_update(f, unit, batch_size, seq_len), g)
      check(burst * tasks_per_cell <= batch_size, "grid.gap", g,
            f"gaps whose bursts fit in the batch's {batch_size} rows: at frequency {f} "
            f"{unit} a burst every {g} updates carries {burst} instance(s) of each of "
            f"{tasks_per_cell} task(s)")


def _max_frequency(unit: str, batch_size: int, seq_len: int, tasks_per_cell: int) -> float:
  rows = batch_size // tasks_per_cell
  return rows / batch_size / (seq_len if unit == "per_token" else 1)


def counts(plan: Injection, first_step: int, num_steps: int) -> np.ndarray:
  """Instances of each of the plan's tasks per update, int64 (num_steps,)."""
  if plan.rate == 0:
    return np.zeros(num_steps, np.int64)
  return injection.counts_per_update(first_step, num_steps, plan.withhold_steps, plan.gap,
                                     plan.rate)


def draws(seed: int, task_index: int, train: np.ndarray, start: int, stop: int) -> np.ndarray:
  """The instances a cell injects as its start-th .. (stop-1)-th of one task: rows of the
  task's instance table, from the seeded per-epoch permutations of the train split."""
  n, out = len(train), []
  for epoch in range(start // n, (stop - 1) // n + 1 if stop > start else start // n):
    perm = np.random.default_rng([seed, task_index, epoch]).permutation(n)
    lo, hi = max(start, epoch * n) - epoch * n, min(stop, (epoch + 1) * n) - epoch * n
    out.append(train[perm[lo:hi]])
  return np.concatenate(out) if out else np.zeros(0, np.int64)


def plan_chunk(plans: Sequence[Injection], tasks: Sequence[Task], first_step: int,
               num_steps: int, batch_size: int, eos_id: int
               ) -> tuple[np.ndarray, list[np.ndarray]]:
  """The injected rows of updates first_step .. first_step + num_steps - 1 for every cell.

  Returns the injected rows (num_steps, cells, batch_size, 4) int32, the tokens replacing each
  row's first 4 (KEEP where a row is not injected), and per cell its manifest rows (n, 4)
  int64: update, row, instance, task index.
  """
  injected = np.full((num_steps, len(plans), batch_size, INJECTED_TOKENS), KEEP, np.int32)
  manifests = []
  steps = np.arange(first_step, first_step + num_steps)
  for m, plan in enumerate(plans):
    rows_used = np.zeros(num_steps, np.int64)
    parts = []
    per_step = counts(plan, first_step, num_steps)
    start = (injection.examples_before(first_step, plan.withhold_steps, plan.gap, plan.rate)
             if plan.tasks else 0)  # instances of each task before this chunk
    for t in plan.tasks:
      ids = draws(plan.seed, t, tasks[t].train, start, start + int(per_step.sum()))
      step_of = np.repeat(np.arange(num_steps), per_step)
      row = rows_used[step_of] + (np.arange(len(ids)) - np.repeat(np.cumsum(per_step)
                                                                   - per_step, per_step))
      rows_used += per_step
      inst = tasks[t].instances[ids]
      injected[step_of, m, row, :INSTANCE] = inst
      injected[step_of, m, row, INSTANCE] = eos_id
      parts.append(np.stack([steps[step_of], row, ids, np.full(len(ids), t)], axis=1))
    manifests.append(np.concatenate(parts) if parts else np.zeros((0, 4), np.int64))
  return injected, [_by_step_and_row(x) for x in manifests]


def _by_step_and_row(rows: np.ndarray) -> np.ndarray:
  return rows[np.lexsort((rows[:, 1], rows[:, 0]))].astype(np.int64) if len(rows) else rows


def apply_injected(rows: np.ndarray, injected: np.ndarray) -> np.ndarray:
  """Host reference of the trainer's injection: rows (..., B, T+1) with the first 4 tokens of
  each row replaced where the injected rows (..., B, 4) is not KEEP."""
  out = np.array(rows, copy=True)
  h = injected.shape[-1]
  out[..., :h] = np.where(injected != KEEP, injected, out[..., :h])
  return out


# -- the manifest files ----------------------------------------------------------------------

def manifest_path(wd: Path, cell: str) -> Path:
  return Path(wd) / MANIFEST_DIR / f"{cell}.csv"


def append_manifest(path: Path, rows: np.ndarray, task_names: Sequence[str]) -> None:
  """Appends manifest rows (n, 4) to a cell's CSV, writing its header first if it is new."""
  if not workdir.is_writer():
    return
  path.parent.mkdir(parents=True, exist_ok=True)
  buf = io.StringIO()
  if not path.exists():
    buf.write(",".join(MANIFEST_COLUMNS) + "\n")
  for step, row, inst, task in rows.tolist():
    buf.write(f"{step},{row},{inst},{task_names[task]}\n")
  workdir.append_bytes(path, buf.getvalue().encode())  # a full disk: DiskFull, no partial row


def truncate_manifest(path: Path, before_step: int) -> None:
  """Keeps the rows of updates before `before_step` (a resumed run rewrites the rest); a file
  without its whole header (killed while it was first written) goes, to be written anew."""
  if not workdir.is_writer() or not path.exists():
    return
  lines = path.read_text().splitlines(keepends=True)
  if not lines or lines[0] != ",".join(MANIFEST_COLUMNS) + "\n":
    path.unlink()
    return
  kept = [lines[0]] + [ln for ln in lines[1:]
                       if ln.endswith("\n") and int(ln.split(",", 1)[0]) < before_step]
  workdir.write_text(path, "".join(kept))


def read_manifest(path: Path) -> tuple[np.ndarray, np.ndarray]:
  """A manifest's update, row and instance columns as int64 (n, 3), and its tasks (n,)."""
  lines = Path(path).read_text().splitlines()[1:]
  if not lines:
    return np.zeros((0, 3), np.int64), np.array([], str)
  cols = [ln.split(",") for ln in lines]
  return (np.array([[int(c) for c in r[:3]] for r in cols], np.int64),
          np.array([r[3] for r in cols]))


# -- one program's injected rows, as the engine's input ----------------------------------------

class Injector:
  """The injected rows of one program's cells, chunk by chunk, each chunk's rows appended to
  the cells' manifests as they are planned (an `Inputs` of `rare_tasks.lm.program`).

  names: the cells' manifest names; plans: their injections; sharding: where the rows go
  (k, P, B, INJECTED_TOKENS), split like the members and the batch.
  """

  def __init__(self, wd: Path, names: Sequence[str], plans: Sequence[Injection],
               tasks: Sequence[Task], batch_size: int, eos_id: int, sharding):
    self.paths = [manifest_path(wd, name) for name in names]
    self.plans, self.tasks = tuple(plans), tuple(tasks)
    self.task_names = [t.name for t in tasks]
    self.batch_size, self.eos_id, self.sharding = batch_size, eos_id, sharding
    self.injecting = any(plan.rate > 0 for plan in plans)

  def start(self, step: int) -> None:
    """A resumed run rewrites what its manifests hold from `step` on."""
    for path in self.paths:
      truncate_manifest(path, step)

  def rows(self, first_step: int, num_steps: int):
    """The rows of these updates on the device (None when no cell injects anything)."""
    injected, manifests = plan_chunk(self.plans, self.tasks, first_step, num_steps,
                                     self.batch_size, self.eos_id)
    for path, rows in zip(self.paths, manifests):
      append_manifest(path, rows, self.task_names)
    return jax.device_put(injected, self.sharding) if self.injecting else None

  def record(self, member: int, step: int) -> dict[str, int]:
    """instances_per_task: the instances of each task the member has trained on by `step`."""
    plan = self.plans[member]
    return {"instances_per_task": 0 if plan.rate == 0 else injection.examples_before(
        step, plan.withhold_steps, plan.gap, plan.rate)}
