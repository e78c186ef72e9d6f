"""Tests of rare_tasks/analysis/thresholds.py: per-seed thresholds and brackets, per-size medians
and ranges, separation and the fall with size."""

import math

import numpy as np
import pytest

from rare_tasks.analysis import thresholds

GRID = np.array([0.1, 0.2, 0.4, 0.8])
PERM = np.array([2, 0, 3, 1])  # the grid passed as [0.4, 0.1, 0.8, 0.2]


def shuffled(rows):
  """GRID and rows (..., 4) given in ascending frequency order, both in PERM order."""
  return GRID[PERM], np.asarray(rows, bool)[..., PERM]


def size(low: float, high: float) -> thresholds.SizeThreshold:
  """A size with range (low, high]; only low and high matter to separation."""
  return thresholds.SizeThreshold(threshold=high, low=low, high=high, seeds=1,
                                  seeds_learned_at_max=int(math.isfinite(high)),
                                  seed_thresholds=(high,), diverged=())


@pytest.mark.parametrize("row, expected", [
    ([1, 1, 1, 1], (0.1, 0.0)),  # lowest learned: bracket (0, 0.1]
    ([0, 1, 1, 1], (0.2, 0.1)),
    ([0, 0, 1, 1], (0.4, 0.2)),
    ([0, 0, 0, 1], (0.8, 0.4)),
    ([0, 0, 0, 0], (math.inf, 0.8)),  # nothing learned: bracket (f_max, inf)
    ([1, 1, 1, 0], (math.inf, 0.8)),  # highest not learned: no threshold however much below is
])
def test_seed_threshold_monotone_golden_in_shuffled_order(row, expected):
  f, learned = shuffled(row)
  assert thresholds.seed_threshold(f, learned) == expected


def test_seed_threshold_non_monotone_row():
  # Learned at 0.1, 0.4 and 0.8 but not 0.2: the 0.1 below an unlearned frequency does not count.
  f, learned = shuffled([1, 0, 1, 1])
  assert thresholds.seed_threshold(f, learned) == (0.4, 0.2)
  # Unlearned only at 0.4: the threshold is the top frequency alone.
  f, learned = shuffled([1, 1, 0, 1])
  assert thresholds.seed_threshold(f, learned) == (0.8, 0.4)


def test_seed_threshold_returns_python_floats():
  threshold, low = thresholds.seed_threshold(*shuffled([0, 1, 1, 1]))
  assert type(threshold) is float and type(low) is float


def test_size_threshold_golden():
  f, learned = shuffled([[0, 0, 1, 1],    # 0.4, bracket (0.2, 0.4]
                         [0, 0, 0, 1],    # 0.8, bracket (0.4, 0.8]
                         [0, 1, 1, 1]])   # 0.2, bracket (0.1, 0.2]
  s = thresholds.size_threshold(f, learned)
  assert s == thresholds.SizeThreshold(threshold=0.4, low=0.1, high=0.8, seeds=3,
                                       seeds_learned_at_max=3, seed_thresholds=(0.4, 0.8, 0.2),
                                       diverged=())


def test_size_threshold_frequency_learned_at_one_of_three_seeds():
  # 0.2 is learned at seed 1 only: the median ignores it, the range's low end reflects it.
  f, learned = shuffled([[0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1]])
  s = thresholds.size_threshold(f, learned)
  assert (s.threshold, s.low, s.high) == (0.4, 0.1, 0.4)
  # 0.4 is not learned at seed 2 only: the median ignores it, the range's high end reflects it.
  f, learned = shuffled([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]])
  s = thresholds.size_threshold(f, learned)
  assert (s.threshold, s.low, s.high) == (0.4, 0.2, 0.8)


def test_size_threshold_seed_without_threshold():
  # The highest frequency is not learned at seed 0: inf counts as the largest value.
  f, learned = shuffled([[1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]])
  s = thresholds.size_threshold(f, learned)
  assert s.seed_thresholds == (math.inf, 0.2, 0.4)
  assert (s.threshold, s.low, s.high) == (0.4, 0.1, math.inf)
  assert s.seeds_learned_at_max == 2
  # Two seeds of three without a threshold: the median is inf.
  f, learned = shuffled([[1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 1, 1]])
  s = thresholds.size_threshold(f, learned)
  assert (s.threshold, s.low, s.high, s.seeds_learned_at_max) == (math.inf, 0.2, math.inf, 1)


def test_size_threshold_diverged_seed_counts_as_not_learned_and_is_flagged():
  # Every row says learned everywhere, but seed 1 diverged: it is forced to learn nothing.
  f, learned = shuffled(np.ones((3, 4)))
  s = thresholds.size_threshold(f, learned, diverged=np.array([False, True, False]))
  assert s.seed_thresholds == (0.1, math.inf, 0.1)
  assert s.diverged == (1,)
  assert (s.threshold, s.low, s.high) == (0.1, 0.0, math.inf)
  assert s.seeds_learned_at_max == 2
  # Without the flag the same rows give a size that learned everything at every seed.
  s = thresholds.size_threshold(f, learned)
  assert (s.threshold, s.low, s.high, s.diverged) == (0.1, 0.0, 0.1, ())


def test_size_threshold_even_seed_count_median():
  f, learned = shuffled([[0, 0, 0, 1], [1, 1, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1]])
  s = thresholds.size_threshold(f, learned)
  assert s.threshold == pytest.approx(0.3)  # mean of the middle two, 0.2 and 0.4
  assert (s.low, s.high, s.seeds) == (0.0, 0.8, 4)
  # A middle value of inf makes the median inf; inf outside the middle two does not.
  f, learned = shuffled([[0, 0, 0, 0], [0, 0, 1, 1]])
  assert thresholds.size_threshold(f, learned).threshold == math.inf
  f, learned = shuffled([[0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1]])
  assert thresholds.size_threshold(f, learned).threshold == pytest.approx(0.6)


def test_separated_examples():
  # Overlapping ranges, either order.
  assert not thresholds.separated(size(0.1, 0.4), size(0.2, 0.8))
  assert not thresholds.separated(size(0.2, 0.8), size(0.1, 0.4))
  # Touching ranges: (0.2, 0.4] and (0.4, 0.8] share no frequency.
  assert thresholds.separated(size(0.2, 0.4), size(0.4, 0.8))
  assert thresholds.separated(size(0.4, 0.8), size(0.2, 0.4))
  # Disjoint with a gap.
  assert thresholds.separated(size(0.0, 0.1), size(0.4, 0.8))


def test_separated_with_sizes_without_threshold():
  f, learned = shuffled(np.zeros((2, 4)))
  nothing = thresholds.size_threshold(f, learned)
  assert (nothing.low, nothing.high, nothing.seeds_learned_at_max) == (0.8, math.inf, 0)
  # A size learning nothing is separated from one whose high is at most f_max, not above.
  assert thresholds.separated(nothing, size(0.4, 0.8))
  assert thresholds.separated(size(0.0, 0.1), nothing)
  assert not thresholds.separated(nothing, size(0.4, math.inf))
  # Two sizes with high = inf are never separated.
  assert not thresholds.separated(nothing, nothing)
  assert not thresholds.separated(size(0.1, math.inf), nothing)


def test_falls_with_size_planted_three_sizes():
  f = np.array([0.8, 0.05, 0.4, 0.1, 0.2])
  def at(*ts):  # rows learning exactly the frequencies >= each seed's threshold
    return thresholds.size_threshold(f, np.array([f >= t for t in ts]))
  small = at(0.8, 0.8, 0.8)   # range (0.4, 0.8]
  medium = at(0.2, 0.4, 0.4)  # range (0.1, 0.4], touching small's: a fall
  large = at(0.1, 0.2, 0.1)   # range (0.05, 0.2], overlapping medium's despite medians 0.4, 0.1
  assert (small.low, small.high) == (0.4, 0.8)
  assert (medium.threshold, medium.low, medium.high) == (0.4, 0.1, 0.4)
  assert (large.threshold, large.low, large.high) == (0.1, 0.05, 0.2)
  assert thresholds.falls_with_size([small, medium, large]) == [True, False]
  # Separated but rising is not a fall.
  assert thresholds.falls_with_size([medium, small]) == [False]
  assert thresholds.falls_with_size([small, large]) == [True]
  assert thresholds.falls_with_size([small]) == []


def test_bad_input_raises_one_line_value_error():
  f, learned = shuffled([0, 1, 1, 1])
  cases = [
      (lambda: thresholds.seed_threshold(f, learned[:3]), "shape"),
      (lambda: thresholds.seed_threshold(np.array([0.1, 0.2, 0.2, 0.4]), learned), "distinct"),
      (lambda: thresholds.size_threshold(f, np.ones((2, 3), bool)), "shape"),
      (lambda: thresholds.size_threshold(np.array([0.1, 0.1, 0.2, 0.4]), np.ones((2, 4), bool)),
       "distinct"),
      (lambda: thresholds.size_threshold(f, np.ones((2, 4), bool), np.array([True])),
       "diverged"),
      (lambda: thresholds.seed_threshold(np.array([0.0, 0.1, 0.2, 0.4]), learned), "> 0"),
  ]
  for call, what in cases:
    with pytest.raises(ValueError, match=what) as info:
      call()
    assert "\n" not in str(info.value)
