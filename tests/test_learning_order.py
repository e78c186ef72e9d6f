"""Tests of rare_tasks/learning_order.py: predicted widths, measured steps, pair agreement."""

import numpy as np
import pytest

from rare_tasks import learning_order, theory
from rare_tasks.tasks import LinearMixture


def _brute_force_width(mixture, spectrum, threshold):
  widths = []
  for k in range(len(mixture)):
    width = spectrum.size + 1
    for n in range(1, spectrum.size + 1):
      if theory.predict(mixture, spectrum, n).fvu[k] <= threshold:
        width = n
        break
    widths.append(width)
  return np.array(widths)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.8, 0.99])
def test_learned_width_equals_brute_force(threshold):
  task = LinearMixture(num_tasks=4, block_size=3, spectrum_normalization="trace")
  spectrum = task.spectrum([0.0, 0.5, 2.0, 3.0])
  mixture = task.mixture(0.05, 1.0)
  widths = learning_order.learned_width(mixture, spectrum, threshold)
  np.testing.assert_array_equal(widths, _brute_force_width(mixture, spectrum, threshold))
  assert widths.dtype.kind == "i"
  assert np.all((widths >= 1) & (widths <= spectrum.size))


def test_learned_width_brute_force_random_mixtures():
  rng = np.random.default_rng(0)
  task = LinearMixture(num_tasks=5, block_size=4, spectrum_normalization="trace")
  for _ in range(5):
    spectrum = task.spectrum(rng.uniform(0.0, 3.0, size=5))
    mixture = rng.dirichlet(np.ones(5))
    threshold = rng.uniform(0.1, 0.9)
    np.testing.assert_array_equal(learning_order.learned_width(mixture, spectrum, threshold),
                                  _brute_force_width(mixture, spectrum, threshold))


def test_learned_width_of_negative_threshold_is_never():
  spectrum = np.ones((2, 3))
  widths = learning_order.learned_width(np.array([0.5, 0.5]), spectrum, -0.1)
  np.testing.assert_array_equal(widths, [7, 7])


def test_frequent_complex_task_is_learned_after_a_rarer_simple_one():
  # Task 0: frequent (pi 0.7), complex (beta 0: four equal features). Task 1: rarer (pi 0.3),
  # simple (beta 3: one dominant feature). Learned at FVU <= 0.8.
  betas, mixture = [0.0, 3.0], np.array([0.7, 0.3])
  trace = LinearMixture(2, 4, spectrum_normalization="trace").spectrum(betas)
  # Trace: utilities 0.175 per feature of task 0, 0.3 * 0.849 = 0.255 for task 1's top feature,
  # so task 1 is learned at width 1 and task 0 (one feature leaves FVU 0.75) at width 2.
  np.testing.assert_array_equal(learning_order.learned_width(mixture, trace, 0.8), [2, 1])
  # Top: task 0's four features (utility 0.7 each) all come before task 1's top one (0.3).
  top = LinearMixture(2, 4, spectrum_normalization="top").spectrum(betas)
  np.testing.assert_array_equal(learning_order.learned_width(mixture, top, 0.8), [1, 5])


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
