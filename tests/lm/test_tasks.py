"""The injected tasks: instances from the hidden bijection, a 50/50 split covering every pair,
disjoint symbols, answer tokens, and the symbol budget refused with the field."""

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
