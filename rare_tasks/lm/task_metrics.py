"""The injection study's task evaluation: per injected task, each member's cross-entropy and
argmax accuracy of the LABEL token after the prefix TOK1 TOK2 alone (argmax over the whole
vocabulary), on the task's train and test instances; a `Measurement` of the engine's program
(`rare_tasks.lm.program`)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from rare_tasks.core import mesh as meshes
from rare_tasks.lm import tasks

# The label evaluation's logits per dispatch are capped near this many floats.
LABEL_LOGITS = 1 << 24


class TaskEvaluation:
  """Every instance of `task_list` evaluated for `num_members` members at once, the instances
  replicated over `mesh` in dispatches of at most about LABEL_LOGITS logits."""

  def __init__(self, task_list: Sequence[tasks.Task], num_members: int, vocab_size: int,
               mesh: jax.sharding.Mesh):
    self._prefixes = np.concatenate([t.instances[:, :tasks.PREFIX] for t in task_list])
    self._labels = np.concatenate([t.instances[:, tasks.PREFIX] for t in task_list])
    n = len(self._labels)
    self.rows_per_dispatch = max(1, min(n, LABEL_LOGITS // (num_members * tasks.PREFIX
                                                             * vocab_size)))
    self._mesh = mesh
    offsets = np.cumsum([0] + [len(t.instances) for t in task_list])
    self.splits = {t.name: (offsets[k] + t.train, offsets[k] + t.test)
                   for k, t in enumerate(task_list)}

  # Placed on first use: a finished program evaluates nothing.
  @functools.cached_property
  def prefixes(self) -> jax.Array:
    """TOK1 TOK2 of every instance, padded to whole dispatches, replicated (N', PREFIX)."""
    pad = -len(self._labels) % self.rows_per_dispatch
    return jax.device_put(np.pad(self._prefixes, ((0, pad), (0, 0))),
                          meshes.replicated(self._mesh))

  @functools.cached_property
  def labels(self) -> jax.Array:
    """The LABEL of every instance, padded like the prefixes, replicated (N',)."""
    pad = -len(self._labels) % self.rows_per_dispatch
    return jax.device_put(np.pad(self._labels, (0, pad)), meshes.replicated(self._mesh))

  def measure(self, trainer: Any, state: Any) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy (P, N) and argmax hit (P, N) of every padded instance."""
    return trainer.label_metrics(state, self.prefixes, self.labels, self.rows_per_dispatch)

  def record(self, member: int, measured: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """<task>_{train,test}_{loss,accuracy} of one member: means over the split's instances."""
    ce, hit = (np.asarray(x) for x in measured)
    r = {}
    for name, (train, test) in self.splits.items():
      r.update({f"{name}_train_loss": float(ce[member, train].mean()),
                f"{name}_train_accuracy": float(hit[member, train].mean()),
                f"{name}_test_loss": float(ce[member, test].mean()),
                f"{name}_test_accuracy": float(hit[member, test].mean())})
    return r
