"""The injection study's task evaluation: per injected task, each member's cross-entropy and
argmax accuracy of the LABEL token after the prefix TOK1 TOK2 alone (argmax over the whole
vocabulary), on the task's train and test instances; a `Measurement` of the engine's program
(`rare_tasks.lm.program`)."""

from __future__ import annotations

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
    prefixes = np.concatenate([t.instances[:, :tasks.PREFIX] for t in task_list])
    labels = np.concatenate([t.instances[:, tasks.PREFIX] for t in task_list])
    per = max(1, min(len(labels), LABEL_LOGITS // (num_members * tasks.PREFIX * vocab_size)))
    pad = -len(labels) % per
    rep = meshes.replicated(mesh)
    self.prefixes = jax.device_put(np.pad(prefixes, ((0, pad), (0, 0))), rep)
    self.labels = jax.device_put(np.pad(labels, (0, pad)), rep)
    self.rows_per_dispatch = per
    offsets = np.cumsum([0] + [len(t.instances) for t in task_list])
    self.splits = {t.name: (offsets[k] + t.train, offsets[k] + t.test)
                   for k, t in enumerate(task_list)}

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
