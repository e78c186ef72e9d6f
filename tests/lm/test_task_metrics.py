"""Tests of rare_tasks/lm/task_metrics.py: the instances laid out in padded dispatches, and
each member's record the means over its task's train and test instances."""

import jax
import numpy as np

from rare_tasks.lm import sharding, tasks
from rare_tasks.lm.task_metrics import LABEL_LOGITS, TaskEvaluation


def _tasks():
  return tasks.make_tasks(("comparison", "addition"), 4, 64, 0, 1, False)


class FakeTrainer:
  """Cross-entropy = the instance's index, hit = whether the index is even (P members)."""

  def __init__(self, members):
    self.members = members

  def label_metrics(self, state, prefixes, labels, rows):
    n = prefixes.shape[0]
    assert n % rows == 0
    ce = np.tile(np.arange(n, dtype=np.float32), (self.members, 1)) + state[:, None]
    return ce, np.tile(np.arange(n) % 2 == 0, (self.members, 1))


def test_the_records_are_means_over_each_tasks_splits():
  task_list = _tasks()
  mesh = sharding.make_mesh(jax.devices()[:1], 1, 1)
  ev = TaskEvaluation(task_list, 2, 64, mesh)
  n = sum(len(t.instances) for t in task_list)
  assert ev.prefixes.shape == (n, tasks.PREFIX) and ev.rows_per_dispatch == n
  measured = jax.device_get(ev.measure(FakeTrainer(2), np.array([0.0, 100.0])))
  offset = len(task_list[0].instances)
  for m in (0, 1):
    r = ev.record(m, measured)
    for k, t in enumerate(task_list):
      for split, ids in (("train", t.train), ("test", t.test)):
        index = ids + k * offset
        assert r[f"{t.name}_{split}_loss"] == np.mean(index + 100.0 * m)
        assert r[f"{t.name}_{split}_accuracy"] == np.mean(index % 2 == 0)


def test_large_vocabularies_split_the_instances_into_padded_dispatches():
  task_list = _tasks()
  mesh = sharding.make_mesh(jax.devices()[:1], 1, 1)
  vocab = LABEL_LOGITS // (3 * tasks.PREFIX * 5)  # room for 5 instances a dispatch
  ev = TaskEvaluation(task_list, 3, vocab, mesh)
  n = sum(len(t.instances) for t in task_list)
  assert ev.rows_per_dispatch == 5
  assert ev.prefixes.shape[0] == -(-n // 5) * 5
  np.testing.assert_array_equal(np.asarray(ev.labels)[n:], 0)
