"""The model-free reference level of an injected task's choice accuracy (Task.choices): rank each
instance's candidates by how often each is the LABEL among the train instances.

A two-way score needs a reference level, not 0.5: on comparison, counting how often each token is
the label among the train instances is a one-dimensional estimate of the hidden order (a larger
value wins more pairs), and it already answers most unseen pairs right. A model at this level has
learned about as much of the order as the counts give; above it, it generalises further. On
addition the counts carry next to nothing, and the level is about 1/p.
"""

from __future__ import annotations

import numpy as np

from rare_tasks.lm import tasks


def label_counts(task: tasks.Task) -> np.ndarray:
  """(max token id + 1,) int64: how often token t is the LABEL among the train instances, at t."""
  labels = task.instances[task.train, tasks.PREFIX]
  return np.bincount(labels, minlength=int(task.tokens().max()) + 1)


def choice_baseline(task: tasks.Task, rows: np.ndarray) -> float:
  """The mean, over the off-diagonal ones of `rows`, of the expected accuracy of choosing the
  candidate with the most train labels, ties broken uniformly at random: a row scores 1/k when
  its right candidate is among the k candidates tied at the top count, else 0. NaN when no
  off-diagonal row is given."""
  rows = np.asarray(rows, np.int64)
  rows = rows[task.off_diagonal()[rows]]
  if not len(rows):
    return float("nan")
  counts = label_counts(task)
  candidates, right = task.choices()
  # One candidate column at a time: addition has p candidates per row, (p^2, p) in all.
  top = np.zeros(len(rows), counts.dtype)
  for j in range(candidates.shape[1]):
    top = np.maximum(top, counts[candidates[rows, j]])
  tied = np.zeros(len(rows), np.int64)
  for j in range(candidates.shape[1]):
    tied += counts[candidates[rows, j]] == top
  hit = counts[candidates[rows, right[rows]]] == top
  return float(np.mean(hit / tied))


def choice_baselines(task: tasks.Task) -> dict[str, float]:
  """choice_baseline on each of the task's rows per tasks.SPLIT_NAMES."""
  return {name: choice_baseline(task, rows) for name, rows in task.split_rows().items()}
