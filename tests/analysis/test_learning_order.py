"""Tests of rare_tasks/analysis/learning_order.py: measured steps, pair agreement."""

import numpy as np
import pytest

from rare_tasks.analysis import learning_order


def test_first_learned_step_golden():
  steps = [0, 100, 250]
  fvu = np.array([[1.0, 0.9, 0.1, 0.9],
                  [0.5, 0.95, 0.2, 0.9],
                  [0.7, 0.99, 0.9, 0.8]])
  # Task 0: first at or below 0.8 at step 100 (the equality at step 250 is later); task 1
  # never; task 2 from step 0 even though it goes back up; task 3 at the threshold exactly.
  first = learning_order.first_learned_step(steps, fvu, 0.8)
  np.testing.assert_array_equal(first, [100.0, np.nan, 0.0, 250.0])
  assert first.dtype == np.float64


def test_pair_agreement_golden():
  measured = np.array([100.0, 200.0, np.nan, 300.0])
  predicted = np.array([1, 3, 2, 2])
  # Pairs (0, 1) and (0, 3) agree, (1, 3) disagrees, every pair with task 2 (never learned)
  # is skipped.
  frac, counted = learning_order.pair_agreement(measured, predicted)
  assert counted == 3
  assert frac == pytest.approx(2 / 3)


def test_pair_agreement_skips_ties():
  # Measured tie (0, 1) and predicted tie (2, 3) carry no order; (0, 2) and (1, 2) disagree,
  # (0, 3) and (1, 3) agree.
  measured = np.array([100.0, 100.0, 300.0, 50.0])
  predicted = np.array([2, 3, 1, 1])
  frac, counted = learning_order.pair_agreement(measured, predicted)
  assert counted == 4
  assert frac == pytest.approx(0.5)


def test_pair_agreement_all_agree_and_reversed():
  measured = np.array([10.0, 20.0, 30.0])
  assert learning_order.pair_agreement(measured, np.array([1, 2, 3])) == (1.0, 3)
  assert learning_order.pair_agreement(measured, np.array([3, 2, 1])) == (0.0, 3)


def test_pair_agreement_without_countable_pairs_is_nan():
  frac, counted = learning_order.pair_agreement(np.array([np.nan, 5.0, 5.0]),
                                                np.array([1, 2, 3]))
  assert counted == 0
  assert np.isnan(frac)
