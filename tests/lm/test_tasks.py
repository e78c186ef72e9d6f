"""The injected tasks: instances from the hidden bijection, a 50/50 split covering every pair
(ordered, pinned to its rows, or unordered, keeping mirrors together), the evaluation splits and
choices, disjoint symbols, answer tokens, and the symbol budget refused with the field."""

import numpy as np
import pytest

from rare_tasks.core.config import ConfigError
from rare_tasks.lm import tasks


def _value(task, token):
  return int(np.flatnonzero(task.symbols == token)[0])


def test_comparison_labels_the_larger_token_in_the_hidden_order():
  (t,) = tasks.make_tasks(("comparison",), 7, 64, seed=3)
  for tok1, tok2, label in t.instances:
    a, b = _value(t, tok1), _value(t, tok2)
    assert label == (tok1 if a >= b else tok2)


def test_addition_labels_the_token_of_the_sum_mod_p():
  (t,) = tasks.make_tasks(("addition",), 11, 64, seed=1)
  for row, (tok1, tok2, label) in enumerate(t.instances):
    a, b = divmod(row, 11)
    assert (_value(t, tok1), _value(t, tok2)) == (a, b)
    assert _value(t, label) == (a + b) % 11


def test_answer_tokens_replace_the_label_and_are_reserved():
  (t,) = tasks.make_tasks(("comparison",), 5, 64, seed=0, answer_tokens=True)
  assert len(t.answers) == 2 and not set(t.answers) & set(t.symbols)
  for tok1, tok2, label in t.instances:
    first_larger = _value(t, tok1) >= _value(t, tok2)
    assert label == t.answers[0 if first_larger else 1]


@pytest.mark.parametrize("p", [2, 3, 10, 100])
def test_train_and_test_are_disjoint_and_cover_every_pair(p):
  (t,) = tasks.make_tasks(("comparison",), p, 512, seed=p)
  assert len(t.instances) == p * p
  assert not set(t.train) & set(t.test)
  assert sorted(set(t.train) | set(t.test)) == list(range(p * p))
  assert len(t.train) == p * p // 2
  pairs = {tuple(x) for x in t.instances[:, :2]}
  assert len(pairs) == p * p  # every ordered pair once, the diagonal included


def test_two_tasks_draw_disjoint_symbols_never_eos_and_the_seed_decides():
  cmp, add = tasks.make_tasks(("comparison", "addition"), 20, 64, seed=0, eos_id=0)
  assert not set(cmp.tokens()) & set(add.tokens())
  assert 0 not in set(cmp.tokens()) | set(add.tokens())
  again = tasks.make_tasks(("comparison", "addition"), 20, 64, seed=0)
  other = tasks.make_tasks(("comparison", "addition"), 20, 64, seed=1)
  np.testing.assert_array_equal(cmp.instances, again[0].instances)
  np.testing.assert_array_equal(cmp.train, again[0].train)
  assert not np.array_equal(cmp.symbols, other[0].symbols)


@pytest.mark.parametrize("p,names,vocab", [(1, ("comparison",), 64), (64, ("comparison",), 64),
                                            (32, ("comparison", "addition"), 64)])
def test_a_p_that_cannot_be_split_or_does_not_fit_is_refused(p, names, vocab):
  with pytest.raises(ConfigError, match=rf"config.task.num_symbols = {p}: allowed: an integer"):
    tasks.make_tasks(names, p, vocab, seed=0)


def test_the_largest_p_that_fits_is_allowed():
  high = tasks.max_num_symbols(("comparison", "addition"), 64, answer_tokens=True)
  assert high == (63 - 2) // 2
  tasks.make_tasks(("comparison", "addition"), high, 64, seed=0, answer_tokens=True)


def test_the_ordered_split_keeps_its_rows_for_a_seed():
  # Computed before the split became a choice: old work directories depend on these rows.
  cmp, add = tasks.make_tasks(("comparison", "addition"), 7, 64, seed=5)
  assert cmp.train.tolist() == [2, 4, 5, 6, 9, 17, 20, 22, 24, 27, 28, 29, 31, 33, 34, 37, 38,
                                39, 40, 42, 44, 45, 46, 47]
  assert cmp.test.tolist() == [0, 1, 3, 7, 8, 10, 11, 12, 13, 14, 15, 16, 18, 19, 21, 23, 25, 26,
                               30, 32, 35, 36, 41, 43, 48]
  assert add.train.tolist() == [0, 1, 5, 6, 7, 8, 9, 11, 13, 16, 17, 21, 22, 23, 25, 27, 32, 34,
                                35, 41, 42, 44, 46, 47]
  (again,) = tasks.make_tasks(("comparison",), 7, 64, seed=5, split="ordered")
  np.testing.assert_array_equal(again.train, cmp.train)


@pytest.mark.parametrize("p", [2, 3, 8])
def test_mirror_swaps_the_pair_and_is_an_involution(p):
  (t,) = tasks.make_tasks(("comparison",), p, 64, seed=0)
  m = t.mirror()
  np.testing.assert_array_equal(t.instances[m, 0], t.instances[:, 1])
  np.testing.assert_array_equal(t.instances[m, 1], t.instances[:, 0])
  np.testing.assert_array_equal(m[m], np.arange(p * p))
  np.testing.assert_array_equal(t.off_diagonal(), t.instances[:, 0] != t.instances[:, 1])
  assert t.off_diagonal().sum() == p * (p - 1)


@pytest.mark.parametrize("split", tasks.SPLITS)
@pytest.mark.parametrize("p", [2, 5, 12])
def test_split_rows_part_the_off_diagonal_test_rows_by_whether_the_mirror_was_seen(split, p):
  (t,) = tasks.make_tasks(("addition",), p, 512, seed=p, split=split)
  r = t.split_rows()
  assert tuple(r) == tasks.SPLIT_NAMES
  diagonal_test = [int(x) for x in t.test if not t.off_diagonal()[x]]
  assert sorted(np.concatenate(list(r.values())).tolist() + diagonal_test) == list(range(p * p))
  for rows in r.values():
    np.testing.assert_array_equal(rows, np.sort(rows))
  np.testing.assert_array_equal(r["train"], t.train)
  train = set(t.train)
  assert not {int(x) for x in t.mirror()[r["test_unseen"]]} & train
  assert {int(x) for x in t.mirror()[r["test_mirror"]]} <= train
  # The diagonal is its own mirror and answers by repeating the prompt: in neither test split.
  assert not set(diagonal_test) & (set(r["test_unseen"]) | set(r["test_mirror"]))


def test_the_ordered_split_has_test_rows_with_and_without_the_mirror_injected():
  (t,) = tasks.make_tasks(("comparison",), 20, 512, seed=0)
  r = t.split_rows()
  assert len(r["test_mirror"]) > 50 and len(r["test_unseen"]) > 50


@pytest.mark.parametrize("p", [2, 3, 4, 7, 20])
def test_the_unordered_split_keeps_each_pair_with_its_mirror_and_takes_half(p):
  (t,) = tasks.make_tasks(("comparison",), p, 512, seed=1, split="unordered")
  np.testing.assert_array_equal(np.sort(t.mirror()[t.train]), t.train)
  assert sorted(set(t.train) | set(t.test)) == list(range(p * p))
  assert not set(t.train) & set(t.test)
  assert len(t.train) == p * p // 2
  assert len(t.split_rows()["test_mirror"]) == 0
  diagonal_train = int((~t.off_diagonal()[t.train]).sum())
  assert abs(diagonal_train - p / 2) <= 1


def test_the_unordered_split_is_seeded():
  (a,) = tasks.make_tasks(("comparison",), 20, 512, seed=1, split="unordered")
  (b,) = tasks.make_tasks(("comparison",), 20, 512, seed=1, split="unordered")
  (c,) = tasks.make_tasks(("comparison",), 20, 512, seed=2, split="unordered")
  np.testing.assert_array_equal(a.train, b.train)
  assert not np.array_equal(a.train, c.train)


def test_an_unknown_split_is_refused_with_the_allowed_values():
  with pytest.raises(ValueError, match=r"unknown split 'mirror': allowed: .*'ordered', 'unorder"):
    tasks.make_tasks(("comparison",), 5, 64, seed=0, split="mirror")


@pytest.mark.parametrize("name,answer_tokens", [("comparison", False), ("comparison", True),
                                                ("addition", False)])
def test_the_right_choice_is_the_label(name, answer_tokens):
  p = 6
  (t,) = tasks.make_tasks((name,), p, 64, seed=4, answer_tokens=answer_tokens)
  candidates, right = t.choices()
  width = p if name == "addition" else 2
  assert candidates.shape == (p * p, width) and right.shape == (p * p,)
  assert candidates.dtype == np.int32 and right.dtype == np.int32
  np.testing.assert_array_equal(candidates[np.arange(p * p), right], t.instances[:, 2])
  a, b = np.divmod(np.arange(p * p), p)
  if name == "addition":
    np.testing.assert_array_equal(candidates, np.tile(t.symbols, (p * p, 1)))
    np.testing.assert_array_equal(right, (a + b) % p)
  else:
    expected = np.tile(t.answers, (p * p, 1)) if answer_tokens else t.instances[:, :2]
    np.testing.assert_array_equal(candidates, expected)
    np.testing.assert_array_equal(right, (a < b).astype(int))
