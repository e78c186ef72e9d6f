"""The task loss after every update, for retention (docs/language_models.md, "The mechanism"):
each member's mean LABEL cross-entropy after TOK1 TOK2 on a fixed subsample of each task's train
instances, traced by the scanned chunk beside the training losses (a `Trace` of the engine's
program, `rare_tasks.lm.program`).

The subsample is drawn once per run by `task.seed` (every member and size traces the same
instances); a record at step s holds the values read after each update since the previous
record: `<task>_trace_loss` (a list), read after `trace_first` .. s updates.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from rare_tasks.core import mesh as meshes
from rare_tasks.lm.tasks import PREFIX, Task


def subsample(task_list: Sequence[Task], instances: int, seed: int) -> np.ndarray:
  """Rows of each task's instance table to trace: (tasks, n) int64, n = min(instances, the
  smallest train split), drawn without replacement from each task's train rows, sorted."""
  n = min(instances, min(len(t.train) for t in task_list))
  return np.stack([np.sort(np.random.default_rng([seed, i]).choice(t.train, n, replace=False))
                   for i, t in enumerate(task_list)])


class TaskTrace:
  """The traced instances of `task_list` (at most `instances` per task, drawn by `seed`),
  replicated over `mesh`."""

  def __init__(self, task_list: Sequence[Task], instances: int, seed: int,
               mesh: jax.sharding.Mesh):
    self.names = [t.name for t in task_list]
    self.rows = subsample(task_list, instances, seed)
    self._prefixes = np.stack([t.instances[r, :PREFIX] for t, r in zip(task_list, self.rows)])
    self._labels = np.stack([t.instances[r, PREFIX] for t, r in zip(task_list, self.rows)])
    self._mesh = mesh

  @functools.cached_property
  def _arrays(self) -> tuple[jax.Array, jax.Array]:
    rep = meshes.replicated(self._mesh)
    return (jax.device_put(self._prefixes.astype(np.int32), rep),
            jax.device_put(self._labels.astype(np.int32), rep))

  def arrays(self) -> tuple[jax.Array, jax.Array]:
    """prefixes (tasks, n, PREFIX) and labels (tasks, n) on the devices."""
    return self._arrays

  def record(self, member: int, first: int, traced: np.ndarray | None) -> dict[str, Any]:
    """trace_first, and per task `<task>_trace_loss`: the member's traced losses (k,) read after
    first .. first + k - 1 updates (None when nothing was trained)."""
    del member
    r: dict[str, Any] = {"trace_first": None if traced is None else int(first)}
    for i, name in enumerate(self.names):
      r[f"{name}_trace_loss"] = None if traced is None else [
          float(v) for v in np.asarray(traced[:, i], np.float32)]
    return r


def member_trace(records: Sequence[dict[str, Any]], task: str, steps: int) -> np.ndarray:
  """One member's traced task loss over the run as the signal of `rare_tasks.analysis.retention`:
  (steps + 1,) float64, index t read after t updates (NaN where nothing was traced, index 0
  always), from its records in step order."""
  signal = np.full(steps + 1, np.nan)
  for r in records:
    values, first = r.get(f"{task}_trace_loss"), r.get("trace_first")
    if values is None or first is None:
      continue
    signal[first:first + len(values)] = [np.nan if v is None else v for v in values]
  return signal
