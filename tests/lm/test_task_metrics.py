"""Tests of rare_tasks/lm/task_metrics.py: the instances laid out in padded dispatches, each
member's record the means over its task's splits, and planted models: one that knows the order
but never emits a prompt token (choice 1, accuracy 0), one that ranks by the train labels'
counts (choice accuracy = the count baseline)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rare_tasks.lm import count_baseline, sharding, tasks
from rare_tasks.lm.task_metrics import LABEL_LOGITS, TaskEvaluation
from rare_tasks.lm.trainer import Trainer
from tests.lm.test_trainer import TRAIN, LookupModel


def _tasks():
  return tasks.make_tasks(("comparison", "addition"), 6, 64, 0, 1, False)


class FakeTrainer:
  """Cross-entropy = the instance's index, hit = whether the index is even, choice = whether it
  is divisible by 3, formatted = by 5 (P members)."""

  def __init__(self, members):
    self.members = members

  def label_metrics(self, state, prefixes, labels, candidates, right, rows):
    n = prefixes.shape[0]
    assert n % rows == 0 and candidates.shape[0] == right.shape[0] == n
    ce = np.tile(np.arange(n, dtype=np.float32), (self.members, 1)) + state[:, None]
    index = np.tile(np.arange(n), (self.members, 1))
    return {"ce": ce, "hit": index % 2 == 0, "choice": index % 3 == 0,
            "formatted": index % 5 == 0}


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
      rows = t.split_rows() | {"test": t.test}
      for split, ids in rows.items():
        assert len(ids) > 0
        index = ids + k * offset
        assert r[f"{t.name}_{split}_loss"] == np.mean(index + 100.0 * m)
        assert r[f"{t.name}_{split}_accuracy"] == np.mean(index % 2 == 0)
        assert r[f"{t.name}_{split}_format_rate"] == np.mean(index % 5 == 0)
        off = index[t.off_diagonal()[ids]]  # the diagonal has no choice
        assert r[f"{t.name}_{split}_choice_accuracy"] == np.mean(off % 3 == 0)
    diagonal = task_list[0].split_rows()["train"][~task_list[0].off_diagonal()[
        task_list[0].split_rows()["train"]]]
    assert len(diagonal) > 0  # the choice mean above left these out


def test_an_empty_split_records_none():
  (t,) = tasks.make_tasks(("comparison",), 4, 64, 0, 1, False, "unordered")
  mesh = sharding.make_mesh(jax.devices()[:1], 1, 1)
  ev = TaskEvaluation((t,), 1, 64, mesh)
  r = ev.record(0, jax.device_get(ev.measure(FakeTrainer(1), np.array([0.0]))))
  assert r["comparison_test_mirror_accuracy"] is None
  # Every off-diagonal test pair is unseen: the two choice scores are over the same pairs.
  assert r["comparison_test_unseen_choice_accuracy"] == r["comparison_test_choice_accuracy"]


def test_large_vocabularies_split_the_instances_into_padded_dispatches():
  task_list = _tasks()
  mesh = sharding.make_mesh(jax.devices()[:1], 1, 1)
  vocab = LABEL_LOGITS // (3 * tasks.PREFIX * 5)  # room for 5 instances a dispatch
  ev = TaskEvaluation(task_list, 3, vocab, mesh)
  n = sum(len(t.instances) for t in task_list)
  assert ev.rows_per_dispatch == 5
  assert ev.prefixes.shape[0] == -(-n // 5) * 5
  np.testing.assert_array_equal(np.asarray(ev.labels)[n:], 0)


VOCAB = 32


def _measured_by_planted(task, logits_of):
  """One task's record scored by a lookup model whose logits after TOK1 TOK2 are
  logits_of(tok1, tok2) (VOCAB,)."""
  table = np.zeros((VOCAB, VOCAB, VOCAB), np.float32)
  for tok1, tok2, _ in task.instances:
    table[tok1, tok2] = logits_of(tok1, tok2)
  mesh = sharding.make_mesh(jax.devices()[:1], 1, 1)
  trainer = Trainer(LookupModel(VOCAB), TRAIN, 1, mesh)
  state = trainer.init(np.array([0]))
  state["params"]["table"] = jnp.asarray(table)[None]
  ev = TaskEvaluation((task,), 1, VOCAB, mesh)
  return ev.record(0, jax.device_get(ev.measure(trainer, state)))


def test_a_model_that_knows_the_order_but_never_emits_a_prompt_token_chooses_right():
  (t,) = tasks.make_tasks(("comparison",), 6, VOCAB, seed=0, eos_id=0)
  value = {int(tok): i for i, tok in enumerate(t.symbols)}
  third = next(x for x in range(1, VOCAB) if x not in set(t.tokens().tolist()))

  def logits(tok1, tok2):
    row = np.zeros(VOCAB, np.float32)
    row[list(value)] = list(value.values())  # the hidden order, below the third token
    row[third] = 100.0
    return row

  r = _measured_by_planted(t, logits)
  for split in ("train", "test_unseen", "test_mirror"):
    assert r[f"comparison_{split}_accuracy"] == 0.0
    assert r[f"comparison_{split}_format_rate"] == 0.0
    assert r[f"comparison_{split}_choice_accuracy"] == 1.0


def test_a_model_that_ranks_by_the_train_label_counts_scores_the_count_baseline():
  for seed in range(50):  # a task whose compared candidates never tie in count
    (t,) = tasks.make_tasks(("comparison",), 6, VOCAB, seed=seed, eos_id=0)
    counts = count_baseline.label_counts(t)
    counts = np.pad(counts, (0, VOCAB - len(counts)))
    off = t.off_diagonal()
    if all(counts[a] != counts[b] for a, b, _ in t.instances[off]):
      break
  else:
    raise AssertionError("no task without tied counts")
  r = _measured_by_planted(t, lambda tok1, tok2: counts.astype(np.float32))
  expected = count_baseline.choice_baselines(t)
  for split in ("train", "test_unseen", "test_mirror"):
    assert r[f"comparison_{split}_choice_accuracy"] == pytest.approx(expected[split])
  assert expected["test_unseen"] < 1.0  # counting does not give the whole order here
