"""The injection study's task evaluation: per injected task and member, the LABEL token after
the prefix TOK1 TOK2 alone, scored four ways on each split of the task's instances; a
`Measurement` of the engine's program (`rare_tasks.lm.program`).

- loss: the LABEL's cross-entropy (nats);
- accuracy: the argmax over the whole vocabulary is the LABEL;
- choice_accuracy: the right answer scores above the other answers the task allows (T_CMP: the
  larger of the two prompt tokens above the smaller, or the right one of its two answer tokens;
  T_ADD: the right label first among the task's p symbols), so a model that knows the order but
  prefers a third token still scores; over off-diagonal pairs only (TOK1 = TOK2 has no choice);
- format_rate: the argmax is an answer the task allows, whether or not the right one.

Splits (`Task.split_rows`): train (injected), test (every held-out pair), test_unseen (neither
the pair nor its mirror injected) and test_mirror (its mirror injected). A split without an
instance (test_mirror under task.split = "unordered") records None.
"""

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
# Every split a record holds, "test" being test_unseen and test_mirror together.
SPLITS = ("train", "test", *tasks.SPLIT_NAMES[1:])
SCORES = ("loss", "accuracy", "choice_accuracy", "format_rate")
# The scores a learned criterion may read.
CRITERIA = ("accuracy", "choice_accuracy")


class TaskEvaluation:
  """Every instance of `task_list` evaluated for `num_members` members at once, the instances
  replicated over `mesh` in dispatches of at most about LABEL_LOGITS logits."""

  def __init__(self, task_list: Sequence[tasks.Task], num_members: int, vocab_size: int,
               mesh: jax.sharding.Mesh):
    self._prefixes = np.concatenate([t.instances[:, :tasks.PREFIX] for t in task_list])
    self._labels = np.concatenate([t.instances[:, tasks.PREFIX] for t in task_list])
    choices = [t.choices() for t in task_list]
    width = max(c.shape[1] for c, _ in choices)
    self._candidates = np.concatenate([np.pad(c, ((0, 0), (0, width - c.shape[1])),
                                              constant_values=-1) for c, _ in choices])
    self._right = np.concatenate([r for _, r in choices]).astype(np.int32)
    n = len(self._labels)
    self.rows_per_dispatch = max(1, min(n, LABEL_LOGITS // (num_members * tasks.PREFIX
                                                             * vocab_size)))
    self._mesh = mesh
    offsets = np.cumsum([0] + [len(t.instances) for t in task_list])
    self.splits: dict[str, dict[str, np.ndarray]] = {}
    self.choice_rows: dict[str, dict[str, np.ndarray]] = {}
    for k, t in enumerate(task_list):
      rows = t.split_rows()
      rows["test"] = t.test
      off = t.off_diagonal()
      self.splits[t.name] = {s: offsets[k] + rows[s] for s in SPLITS}
      self.choice_rows[t.name] = {s: offsets[k] + rows[s][off[rows[s]]] for s in SPLITS}

  def _placed(self, host: np.ndarray) -> jax.Array:
    pad = -len(self._labels) % self.rows_per_dispatch
    widths = ((0, pad),) + ((0, 0),) * (host.ndim - 1)
    return jax.device_put(np.pad(host, widths), meshes.replicated(self._mesh))

  # Placed on first use: a finished program evaluates nothing.
  @functools.cached_property
  def prefixes(self) -> jax.Array:
    """TOK1 TOK2 of every instance, padded to whole dispatches, replicated (N', PREFIX)."""
    return self._placed(self._prefixes)

  @functools.cached_property
  def labels(self) -> jax.Array:
    """The LABEL of every instance, padded like the prefixes, replicated (N',)."""
    return self._placed(self._labels)

  @functools.cached_property
  def candidates(self) -> jax.Array:
    """The answers each instance allows, -1 padded to the widest task, replicated (N', C)."""
    return self._placed(self._candidates)

  @functools.cached_property
  def right(self) -> jax.Array:
    """The index in `candidates` of each instance's right answer, replicated (N',)."""
    return self._placed(self._right)

  def measure(self, trainer: Any, state: Any) -> dict[str, jax.Array]:
    """{"ce", "hit", "choice", "formatted"}: each (P, N') over every padded instance."""
    return trainer.label_metrics(state, self.prefixes, self.labels, self.candidates,
                                 self.right, self.rows_per_dispatch)

  def record(self, member: int, measured: dict[str, np.ndarray]) -> dict[str, float | None]:
    """<task>_<split>_<score> of one member for every split and score: means over the split's
    instances (choice_accuracy over its off-diagonal ones), None for an empty split."""
    m = {k: np.asarray(v)[member] for k, v in measured.items()}
    r: dict[str, float | None] = {}
    for name, splits in self.splits.items():
      for split, rows in splits.items():
        choice = self.choice_rows[name][split]
        for score, values, at in (("loss", m["ce"], rows), ("accuracy", m["hit"], rows),
                                  ("choice_accuracy", m["choice"], choice),
                                  ("format_rate", m["formatted"], rows)):
          r[f"{name}_{split}_{score}"] = float(values[at].mean()) if len(at) else None
    return r
