"""Tests of rare_tasks/analysis/frequency_search.py: brackets, adaptive rounds, results, width
inverse."""

from __future__ import annotations

import numpy as np
import pytest

from rare_tasks.analysis import frequency_search as fs

WIDTHS = (8, 16, 32, 64)
SEEDS = 4
SLOPE = -1.3


def power_law(widths=WIDTHS) -> dict[int, float]:
  return {w: 1e-3 * (w / 8) ** SLOPE for w in widths}


def true_thresholds(widths=WIDTHS, seeds=SEEDS, jitter=0.15, seed=0) -> dict[int, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {w: c * np.exp(jitter * rng.standard_normal(seeds)) for w, c in power_law(widths).items()}


def monotone_oracle(truth: dict[int, np.ndarray]):
  return lambda w, f: f[None, :] >= truth[w][:, None]


def drive(search: fs.FrequencySearch, oracle, max_rounds: int = 50) -> list[dict[int, np.ndarray]]:
  """Runs the search to the end; returns the candidates of every round."""
  rounds = []
  while (candidates := search.next_round()) is not None:
    assert len(rounds) < max_rounds
    for f in candidates.values():
      assert f.shape == (search.settings.num_candidates,) and f.dtype == np.float64
      assert (np.diff(f) > 0).all()
      assert f[0] >= search.settings.min_frequency and f[-1] <= search.settings.max_frequency
    rounds.append(candidates)
    search.record({w: oracle(w, f) for w, f in candidates.items()})
  return rounds


def settings(**kw) -> fs.SearchSettings:
  return fs.SearchSettings(**{"min_frequency": 1e-6, "max_frequency": 0.5, **kw})


def test_bracket_follows_the_documented_rule():
  f = np.array([3.0, 1.0, 5.0, 2.0, 4.0])  # unsorted on purpose
  learned = np.array([
      [False, False, True, False, True],   # monotone: threshold 4, lo 3
      [True, True, True, True, True],      # learned everywhere: hi 1, lo 0
      [False, False, False, False, False],  # never: lo 5, hi inf
      [False, False, True, True, True],    # learns at 2, not at 3: threshold 4, lo 3
      [False, False, True, False, False],  # learns only at the top: threshold 5, lo 4
  ])
  lo, hi = fs.bracket(f, learned)
  np.testing.assert_array_equal(lo, [3, 0, 5, 3, 4])
  np.testing.assert_array_equal(hi, [4, 1, np.inf, 4, 5])
  # A frequency tested twice with one failure counts as unlearned.
  lo, hi = fs.bracket(np.array([1.0, 2.0, 2.0, 3.0]), np.array([[False, True, False, True]]))
  np.testing.assert_array_equal(lo, [2])
  np.testing.assert_array_equal(hi, [3])
  lo, hi = fs.bracket(np.zeros(0), np.zeros((2, 0), bool))
  np.testing.assert_array_equal(lo, [0, 0])
  np.testing.assert_array_equal(hi, [np.inf, np.inf])


def test_search_converges_on_monotone_oracle():
  truth = true_thresholds()
  search = fs.FrequencySearch(WIDTHS, SEEDS, power_law(), settings())
  rounds = drive(search, monotone_oracle(truth))
  assert len(rounds) == 3  # bracket, then two refinements: no expansion needed
  results = search.results()
  for w in WIDTHS:
    r = results[w]
    assert r.key == w and r.thresholds.shape == (SEEDS,)
    assert (r.lo < truth[w]).all() and (truth[w] <= r.hi).all()
    assert r.resolution < 1.3
    ratio = np.abs(np.log(r.thresholds / truth[w]))
    assert (ratio <= np.log(r.resolution)).all()
    assert not r.upper_bound.any() and not r.never_learned and not r.below_range
    assert r.low == r.thresholds.min() and r.high == r.thresholds.max()
    np.testing.assert_allclose(r.min_frequency, np.exp(np.median(np.log(r.thresholds))))
    assert r.low <= r.min_frequency <= r.high
    # The last refinement splits the union bracket into 9 equal log steps (7 between its
    # candidates), and every seed's final bracket is at most one step.
    step = (rounds[-1][w][-1] / rounds[-1][w][0]) ** (1 / 7)
    assert r.resolution <= step * (1 + 1e-9)


def test_refinement_stays_strictly_inside_union_bracket():
  truth = true_thresholds(widths=(8,), seeds=3)
  search = fs.FrequencySearch((8,), 3, power_law((8,)), settings())
  oracle = monotone_oracle(truth)
  first = search.next_round()
  search.record({8: oracle(8, first[8])})
  lo, hi = fs.bracket(first[8], oracle(8, first[8]))
  refine = search.next_round()[8]
  assert lo.min() < refine[0] and refine[-1] < hi.max()
  np.testing.assert_allclose(np.diff(np.log(refine)), np.log(hi.max() / lo.min()) / 9)


@pytest.mark.parametrize("offset", [10.0, 0.1])
def test_centers_off_by_10x_converge_through_expansion(offset):
  truth = true_thresholds()
  centers = {w: c * offset for w, c in power_law().items()}
  search = fs.FrequencySearch(WIDTHS, SEEDS, centers, settings())
  rounds = drive(search, monotone_oracle(truth))
  assert len(rounds) == 4  # bracket, one expansion, two refinements
  # The expansion round lies wholly beyond the first round's range, on the side of the truth.
  for w in WIDTHS:
    if offset < 1:
      assert rounds[1][w][0] > rounds[0][w][-1]
    else:
      assert rounds[1][w][-1] < rounds[0][w][0]
  for w, r in search.results().items():
    assert (r.lo < truth[w]).all() and (truth[w] <= r.hi).all()
    assert r.resolution < 1.3


def test_mixed_expansion_splits_candidates_between_both_sides():
  # One seed learns below the first round, one only above it.
  truth = {8: np.array([1e-5, 1e-1])}
  search = fs.FrequencySearch((8,), 2, {8: 1e-3}, settings())
  oracle = monotone_oracle(truth)
  first = search.next_round()[8]
  search.record({8: oracle(8, first)})
  second = search.next_round()[8]
  assert (second[:4] < first[0]).all() and (second[4:] > first[-1]).all()
  drive(search, oracle)
  r = search.results()[8]
  assert (r.lo < truth[8]).all() and (truth[8] <= r.hi).all()


def test_done_widths_are_left_out_while_others_go_on():
  truth = true_thresholds(widths=(8, 16), seeds=2)
  centers = power_law((8, 16))
  centers[16] /= 100  # needs two expansions: 16x per expansion after a first 4x
  search = fs.FrequencySearch((8, 16), 2, centers, settings())
  rounds = drive(search, monotone_oracle(truth))
  assert [sorted(r) for r in rounds] == [[8, 16]] * 3 + [[16]] * 2
  for w, r in search.results().items():
    assert (r.lo < truth[w]).all() and (truth[w] <= r.hi).all()


def test_never_learned_up_to_max_frequency():
  truth = {8: np.full(3, 1.0), 16: np.full(3, 1e-3)}  # width 8 needs more than max_frequency
  search = fs.FrequencySearch((8, 16), 3, {8: 1e-2, 16: 1e-3}, settings(max_frequency=0.2))
  rounds = drive(search, monotone_oracle(truth))
  assert rounds[-1].keys() == {16}
  r = search.results()[8]
  assert r.never_learned and np.isnan(r.thresholds).all()
  assert np.isnan(r.min_frequency) and np.isnan(r.low) and np.isnan(r.high)
  assert np.isnan(r.resolution) and r.searched[1] == 0.2 and np.isinf(r.hi).all()
  assert not search.results()[16].never_learned


def test_never_learned_when_expansions_run_out():
  truth = {8: np.full(2, 0.4)}
  search = fs.FrequencySearch((8,), 2, {8: 1e-5}, settings(max_expansions=1))
  rounds = drive(search, monotone_oracle(truth))
  assert len(rounds) == 2
  r = search.results()[8]
  assert r.never_learned and r.searched[1] < 0.4


def test_below_range_reports_min_frequency_as_upper_bound():
  truth = {8: np.array([1e-8, 1e-8, 1e-3])}
  search = fs.FrequencySearch((8,), 3, {8: 1e-4}, settings(min_frequency=1e-5))
  drive(search, monotone_oracle(truth))
  r = search.results()[8]
  assert r.below_range and not r.never_learned
  np.testing.assert_array_equal(r.upper_bound, [True, True, False])
  np.testing.assert_array_equal(r.thresholds[:2], [1e-5, 1e-5])
  assert r.searched[0] == 1e-5 and r.low == 1e-5
  assert r.lo[2] < 1e-3 <= r.hi[2]
  assert r.min_frequency == pytest.approx(1e-5, rel=1e-12)  # median of (1e-5, 1e-5, ~1e-3)


def test_one_never_learning_seed_makes_high_nan_and_moves_median():
  truth = {8: np.array([1e-3, 2e-3, 10.0])}
  search = fs.FrequencySearch((8,), 3, {8: 1e-3}, settings(max_frequency=0.1))
  drive(search, monotone_oracle(truth))
  r = search.results()[8]
  assert np.isnan(r.thresholds[2]) and np.isfinite(r.thresholds[:2]).all()
  assert not r.never_learned and np.isnan(r.high)
  assert r.low == r.thresholds[0]
  assert r.min_frequency == pytest.approx(r.thresholds[1], rel=1e-12)


def test_replay_of_stored_results_reproduces_candidates():
  truth = true_thresholds(seed=3)
  centers = {w: c * 10 for w, c in power_law().items()}
  search = fs.FrequencySearch(WIDTHS, SEEDS, centers, settings())
  drive(search, monotone_oracle(truth))
  stored = search.history
  assert len(stored) == search.round_index == 4
  fresh = fs.FrequencySearch(WIDTHS, SEEDS, centers, settings())
  for candidates, learned in stored:
    proposed = fresh.next_round()
    assert proposed.keys() == candidates.keys()
    for w in candidates:
      np.testing.assert_array_equal(proposed[w], candidates[w])
    fresh.record(learned, candidates=candidates)
  assert fresh.next_round() is None
  for w in WIDTHS:
    np.testing.assert_array_equal(fresh.results()[w].thresholds, search.results()[w].thresholds)
  # Replaying against different settings is caught.
  other = fs.FrequencySearch(WIDTHS, SEEDS, centers, settings(bracket_factor=3.0))
  with pytest.raises(ValueError, match="differ"):
    other.record(stored[0][1], candidates=stored[0][0])


def test_next_round_is_idempotent_and_record_validates():
  search = fs.FrequencySearch((8, 16), 2, power_law((8, 16)), settings())
  a, b = search.next_round(), search.next_round()
  np.testing.assert_array_equal(a[8], b[8])
  a[8][:] = 0  # the caller's copy; the search's own is untouched
  assert search.next_round()[8][0] > 0
  with pytest.raises(ValueError, match="keys"):
    search.record({8: np.ones((2, 8), bool)})
  with pytest.raises(ValueError, match="shape"):
    search.record({8: np.ones((2, 8), bool), 16: np.ones((3, 8), bool)})
  assert search.round_index == 0


def test_non_monotone_oracle_follows_threshold_rule():
  # Learned from 1e-3 up, except in the dip [1.5e-3, 3e-3): the threshold rule gives 3e-3.
  def oracle(w, f):
    learned = (f >= 1e-3) & ~((f >= 1.5e-3) & (f < 3e-3))
    return np.broadcast_to(learned, (2, len(f)))

  search = fs.FrequencySearch((8,), 2, {8: 1e-3}, settings())
  rounds = drive(search, oracle)
  tested = np.concatenate([r[8] for r in rounds])
  assert ((tested > 1.5e-3) & (tested < 3e-3)).any()  # the dip was seen
  r = search.results()[8]
  assert (r.lo < 3e-3).all() and (3e-3 <= r.hi).all()
  assert r.resolution < 1.3
  # lo is the largest tested frequency below the threshold, and it did not learn.
  below = tested[tested < r.hi[0]]
  assert r.lo[0] == below.max() and not oracle(8, np.array([r.lo[0]]))[0, 0]
  np.testing.assert_allclose(r.thresholds, np.sqrt(r.lo * r.hi))


def test_smallest_width_hand_example():
  widths = [32, 8, 16, 64]  # unsorted on purpose
  median = [2e-3, 1e-2, 5e-3, np.nan]
  low = [1e-3, 8e-3, 4e-3, 5e-4]
  high = [3e-3, 2e-2, 6e-3, np.nan]
  mid, lo, hi = fs.smallest_width(widths, median, low, high, [1e-2, 5e-3, 2.5e-3, 1e-3, 1e-4])
  np.testing.assert_array_equal(mid, [8, 16, 32, np.nan, np.nan])
  np.testing.assert_array_equal(lo, [8, 16, 32, 32, np.nan])
  np.testing.assert_array_equal(hi, [16, 32, np.nan, np.nan, np.nan])
  assert (lo[:3] <= mid[:3]).all()


def test_log_slope():
  law = power_law()
  w = np.array(WIDTHS, float)
  f = np.array([law[int(x)] for x in w])
  assert fs.log_slope(w, f) == pytest.approx(SLOPE, abs=1e-12)
  assert fs.log_slope(np.append(w, 128), np.append(f, np.nan)) == pytest.approx(SLOPE, abs=1e-12)
  assert np.isnan(fs.log_slope([8, 16], [1e-3, np.nan]))
  assert np.isnan(fs.log_slope([8, 8], [1e-3, 2e-3]))


def test_log_slope_recovers_exponent_from_search():
  truth = true_thresholds(jitter=0.1, seed=5)
  search = fs.FrequencySearch(WIDTHS, SEEDS, {w: 1e-3 for w in WIDTHS}, settings())
  drive(search, monotone_oracle(truth))
  results = search.results()
  medians = [results[w].min_frequency for w in WIDTHS]
  assert fs.log_slope(WIDTHS, medians) == pytest.approx(SLOPE, abs=0.1)


def test_keys_of_any_hashable_type_search_like_widths():
  """A ladder preset's name or a (preset, run length) tuple is a key like a width: the same
  rounds and thresholds for the same oracle."""
  truth = true_thresholds()
  names = {w: (f"d{w}", 4000) for w in WIDTHS}
  by_width = fs.FrequencySearch(WIDTHS, SEEDS, power_law(), settings())
  by_name = fs.FrequencySearch([names[w] for w in WIDTHS], SEEDS,
                               {names[w]: c for w, c in power_law().items()}, settings())
  width_of = {v: k for k, v in names.items()}
  a = drive(by_width, monotone_oracle(truth))
  b = drive(by_name, lambda k, f: monotone_oracle(truth)(width_of[k], f))
  assert len(a) == len(b)
  for ra, rb in zip(a, b):
    assert {names[w] for w in ra} == set(rb)
    for w, f in ra.items():
      np.testing.assert_array_equal(f, rb[names[w]])
  for w in WIDTHS:
    np.testing.assert_array_equal(by_width.results()[w].hi, by_name.results()[names[w]].hi)
    f, x = by_name.tested(names[w])
    assert x.shape == (SEEDS, f.size) and f.size == sum(len(r.get(names[w], ())) for r in b)


def test_smallest_key_keeps_the_given_order():
  keys = ["small", "mid", "large"]
  mid, lo, hi = fs.smallest_key(keys, [0.3, 0.1, np.nan], [0.2, 0.05, 0.02],
                                [0.4, 0.2, np.nan], [0.5, 0.25, 0.1, 0.03, 0.01])
  assert mid == ["small", "mid", "mid", None, None]
  assert lo == ["small", "small", "mid", "large", None]
  assert hi == ["small", "mid", None, None, None]


def test_log_slope_interval_exact_law_and_too_few_sizes():
  sizes = [1e3, 4e3, 1.6e4]
  seeds = [[0.3, 0.3, 0.3], [0.1, 0.1, 0.1], [0.0375, 0.0375, 0.0375]]
  slope, lo, hi = fs.log_slope_interval(sizes, seeds)
  assert slope == pytest.approx(np.log(0.125) / np.log(16), abs=1e-12)
  assert lo == pytest.approx(slope) and hi == pytest.approx(slope)  # no seed spread
  # One seed never learning at the largest size: its median stays finite (2 of 3 learned).
  slope2, lo2, hi2 = fs.log_slope_interval(sizes,
                                           [[0.3] * 3, [0.1] * 3, [0.0375, 0.0375, np.inf]])
  assert slope2 == pytest.approx(slope) and lo2 <= slope2 <= hi2
  # Spread widens the interval around the fit.
  slope3, lo3, hi3 = fs.log_slope_interval(sizes,
                                           [[0.2, 0.3, 0.4], [0.1] * 3, [0.03, 0.0375, 0.05]])
  assert lo3 < slope3 < hi3
  assert all(np.isnan(fs.log_slope_interval(sizes[:2], seeds[:2])))
  assert all(np.isnan(fs.log_slope_interval(sizes, [[0.3], [np.inf], [0.05]])))
