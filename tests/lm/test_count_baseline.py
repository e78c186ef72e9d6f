"""The count baseline of choice accuracy: hand-worked tiny tasks (ties worth 1/k, the diagonal left
out), the answer-token majority, addition's 1/p level, and a brute-force reference over every
tie-breaking order."""

import collections
import dataclasses
import itertools
import math

import numpy as np
import pytest

from rare_tasks.lm import count_baseline, tasks


def _with_train(task, train):
  """The task with these train rows and the others as test."""
  train = np.sort(np.asarray(train, np.int64))
  return dataclasses.replace(task, train=train,
                             test=np.setdiff1d(np.arange(len(task.instances)), train))


def _comparison3(train):
  (t,) = tasks.make_tasks(("comparison",), 3, 64, seed=0)
  return _with_train(t, train)


def test_label_counts_count_the_train_labels_by_token():
  t = _comparison3([3, 7])  # (1, 0) labels value 1, (2, 1) labels value 2
  counts = count_baseline.label_counts(t)
  assert len(counts) == t.tokens().max() + 1
  assert counts[t.symbols].tolist() == [0, 1, 1]
  assert counts.sum() == 2


def test_hand_worked_comparison_with_a_tie_worth_a_half():
  t = _comparison3([3, 7])  # counts: value 0 -> 0, 1 -> 1, 2 -> 1
  # (0, 1) and (0, 2): the larger has the count 1, the smaller 0: right. (1, 2): tied, 1/2.
  assert count_baseline.choice_baseline(t, [1, 2, 5]) == pytest.approx(2.5 / 3)
  assert count_baseline.choice_baseline(t, [5]) == 0.5
  assert count_baseline.choice_baseline(t, [6]) == 1.0  # (2, 0)
  assert count_baseline.choice_baseline(t, [5, 0, 4, 8]) == 0.5  # the diagonal is left out
  assert math.isnan(count_baseline.choice_baseline(t, [0, 4, 8]))
  assert math.isnan(count_baseline.choice_baseline(t, []))


def test_hand_worked_comparison_where_the_counts_point_the_wrong_way():
  t = _comparison3([0])  # (0, 0): only value 0 was ever the label
  # (0, 1) and (2, 0): value 0 has the count and is wrong; (1, 2): 0 against 0, a tie.
  assert count_baseline.choice_baseline(t, [1, 6]) == 0.0
  assert count_baseline.choice_baseline(t, [1, 5, 6]) == pytest.approx(0.5 / 3)


@pytest.mark.parametrize("seed", [0, 1, 4])  # majorities: the second answer, the first, the first
def test_answer_tokens_score_the_rows_whose_answer_is_the_train_majority(seed):
  (t,) = tasks.make_tasks(("comparison",), 7, 64, seed=seed, answer_tokens=True)
  first, second = count_baseline.label_counts(t)[t.answers]
  assert first != second  # these seeds have a majority
  majority = t.answers[0 if first > second else 1]
  for rows in t.split_rows().values():
    off = rows[t.off_diagonal()[rows]]
    expected = np.mean(t.instances[off, 2] == majority)
    assert count_baseline.choice_baseline(t, rows) == pytest.approx(expected)


def test_answer_tokens_tied_in_train_score_a_half():
  (t,) = tasks.make_tasks(("comparison",), 4, 64, seed=0, answer_tokens=True)
  t = _with_train(t, [1, 4])  # (0, 1) and (1, 0): one of each answer
  assert count_baseline.choice_baseline(t, np.arange(16)) == 0.5


def test_addition_with_uniform_counts_scores_one_over_p():
  p = 5
  (t,) = tasks.make_tasks(("addition",), p, 64, seed=0)
  t = _with_train(t, np.arange(2 * p))  # a in {0, 1}: every sum twice
  assert len(set(count_baseline.label_counts(t)[t.symbols])) == 1
  for rows in t.split_rows().values():
    assert count_baseline.choice_baseline(t, rows) == pytest.approx(1 / p)


@pytest.mark.parametrize("split", tasks.SPLITS)
def test_addition_sits_near_one_over_p(split):
  p = 31
  (t,) = tasks.make_tasks(("addition",), p, 512, seed=2, split=split)
  # Odd p: every sum is the label of p - 1 off-diagonal rows, so over all of them exactly 1/p.
  assert count_baseline.choice_baseline(t, np.arange(p * p)) == pytest.approx(1 / p)
  for name, value in count_baseline.choice_baselines(t).items():
    assert math.isnan(value) if name == "test_mirror" and split == "unordered" else value < 4 / p


def test_comparison_counts_recover_most_of_the_order():
  (t,) = tasks.make_tasks(("comparison",), 31, 512, seed=2)
  baselines = count_baseline.choice_baselines(t)
  assert tuple(baselines) == tasks.SPLIT_NAMES
  assert all(0.8 < v < 1 for v in baselines.values())


def _brute_force(task, rows):
  """The same definition, row by row: the mean over every tie-breaking order of the candidates
  of whether the first candidate with the top train count in that order is the right one."""
  counts = collections.Counter(int(x) for x in task.instances[task.train, 2])
  candidates, right = task.choices()
  scores = []
  for row in rows:
    tok1, tok2 = task.instances[row, :2]
    if tok1 == tok2:
      continue
    c = [counts[int(x)] for x in candidates[row]]
    wins = []
    for order in itertools.permutations(range(len(c))):
      best = order[0]
      for j in order[1:]:
        if c[j] > c[best]:
          best = j
      wins.append(best == right[row])
    scores.append(np.mean(wins))
  return float(np.mean(scores)) if scores else float("nan")


@pytest.mark.parametrize("name,p,answer_tokens", [("comparison", 5, False),
                                                  ("comparison", 5, True), ("addition", 4, False),
                                                  ("addition", 5, False)])
def test_the_baseline_agrees_with_a_brute_force_reference_on_random_tasks(name, p, answer_tokens):
  rng = np.random.default_rng(p)
  for seed in range(3):
    for split in tasks.SPLITS:
      (t,) = tasks.make_tasks((name,), p, 64, seed=seed, answer_tokens=answer_tokens, split=split)
      # Random train sets of any size: uneven counts and many ties.
      for task in [t, _with_train(t, rng.choice(p * p, rng.integers(1, p * p), replace=False))]:
        for rows in [*task.split_rows().values(), np.arange(p * p),
                     rng.choice(p * p, 7, replace=False)]:
          expected = _brute_force(task, rows)
          got = count_baseline.choice_baseline(task, rows)
          assert got == pytest.approx(expected, nan_ok=True)
