"""Tests of rare_tasks/analysis/retention.py: per-burst metrics and cell summaries of synthetic
decays with known gains, retention and half-lives."""

import math

import numpy as np
import pytest

from rare_tasks import injection
from rare_tasks.analysis import retention


def _synthetic(gain, half_life, gap, r_inf, withhold=5, num_bursts=6, extra=0):
  """Bursts every `gap` updates; after each the excess decays to r_inf * gain."""
  steps = withhold + num_bursts * gap + extra
  signal = np.zeros(steps + 1)
  bursts = injection.burst_updates(steps, withhold, gap)
  level = 0.0
  for b in bursts:
    t = np.arange(b + 1, min(b + gap, steps) + 1)
    signal[t] = level + gain * (r_inf + (1 - r_inf) * 2.0 ** (-(t - b - 1) / half_life))
    level = signal[min(b + gap, steps)]
  return signal, bursts


@pytest.mark.parametrize("gap,h", [(8, 2.0), (16, 5.0), (4, 0.7)])
def test_full_decay_metrics(gap, h):
  g = 0.3
  signal, bursts = _synthetic(g, h, gap, r_inf=0.0)
  rows = retention.burst_metrics(signal, bursts)
  assert len(rows) == 6
  for i, row in enumerate(rows):
    assert row["burst"] == i and row["update"] == bursts[i] and row["end"] == bursts[i] + gap
    np.testing.assert_allclose(row["gain"], g, rtol=1e-9)
    np.testing.assert_allclose(row["half_life"], h, rtol=1e-6)
    np.testing.assert_allclose(row["retained_fraction"], 2.0 ** (-(gap - 1) / h), rtol=1e-9)


def test_ratchet_metrics_accumulate():
  g = 0.1
  signal, bursts = _synthetic(g, 3.0, 8, r_inf=1.0)
  rows = retention.burst_metrics(signal, bursts)
  for row in rows:
    np.testing.assert_allclose(row["retained_fraction"], 1.0, rtol=1e-12)
    assert row["half_life"] == math.inf
  summary = retention.cell_summary(rows)
  assert summary["bursts"] == 6
  np.testing.assert_allclose(summary["net_rise"], 6 * g, rtol=1e-9)
  assert summary["accumulates"]


def test_decay_to_zero_does_not_accumulate():
  signal, bursts = _synthetic(0.2, 1.0, 16, r_inf=0.0)
  summary = retention.cell_summary(retention.burst_metrics(signal, bursts))
  np.testing.assert_allclose(summary["median_gain"], 0.2, rtol=1e-9)
  np.testing.assert_allclose(summary["median_half_life"], 1.0, rtol=1e-6)
  assert 0 < summary["net_rise"] < 0.2 * 6 * 2.0 ** -15 * 1.001
  assert not summary["accumulates"]


def test_partial_last_window_is_dropped_and_lone_burst_uses_run_end():
  signal, bursts = _synthetic(0.2, 2.0, 8, r_inf=0.0, extra=5)
  bursts = injection.burst_updates(len(signal) - 1, 5, 8)
  assert len(bursts) == 7
  rows = retention.burst_metrics(signal, bursts)
  assert [r["burst"] for r in rows] == list(range(6))
  lone = retention.burst_metrics(signal[:12], bursts[:1])
  assert len(lone) == 1 and lone[0]["end"] == 11
  np.testing.assert_allclose(lone[0]["retained_fraction"], 2.0 ** -2.5, rtol=1e-9)


def test_steady_exposure_has_no_observable_decay():
  signal = np.concatenate([np.zeros(4), np.linspace(0.1, 1.0, 10)])
  bursts = injection.burst_updates(len(signal) - 1, 3, 1)
  rows = retention.burst_metrics(signal, bursts)
  assert len(rows) == 10
  for row in rows:
    np.testing.assert_allclose(row["gain"], 0.1, rtol=1e-9)
    assert row["retained_fraction"] == 1.0 and row["half_life"] == math.inf


def test_non_finite_signal_gives_nan_metrics():
  signal, bursts = _synthetic(0.2, 2.0, 8, r_inf=0.0)
  signal[bursts[2] + 3] = np.nan
  signal[bursts[4] + 1] = np.inf
  rows = retention.burst_metrics(signal, bursts)
  for i in (2, 4):
    for key in ("before", "peak", "gain", "retained_fraction", "half_life"):
      assert math.isnan(rows[i][key])
  np.testing.assert_allclose(rows[3]["half_life"], 2.0, rtol=1e-6)
  summary = retention.cell_summary(rows)
  np.testing.assert_allclose(summary["median_gain"], 0.2, rtol=1e-9)


def test_no_gain_gives_nan_retention():
  signal = np.concatenate([np.zeros(3), -np.arange(1.0, 9.0)])
  rows = retention.burst_metrics(signal, injection.burst_updates(10, 2, 4))
  assert rows and all(math.isnan(r["retained_fraction"]) for r in rows)
  assert all(math.isnan(r["half_life"]) for r in rows)


def test_empty_summary():
  summary = retention.cell_summary([])
  assert summary["bursts"] == 0 and not summary["accumulates"]
  assert math.isnan(summary["median_gain"]) and math.isnan(summary["net_rise"])


def test_baseline_windows_tile_the_second_half_of_the_withholding_backwards():
  np.testing.assert_array_equal(retention.baseline_starts(64, 16), [32, 48])
  np.testing.assert_array_equal(retention.baseline_starts(70, 16), [38, 54])
  np.testing.assert_array_equal(retention.baseline_starts(64, 1), np.arange(32, 64))
  np.testing.assert_array_equal(retention.baseline_starts(64, 8, start=0), np.arange(0, 64, 8))
  assert len(retention.baseline_starts(64, 40)) == 0  # no window fits in updates 32..64
  with pytest.raises(ValueError, match="gap"):
    retention.baseline_starts(64, 0)


def test_baseline_gain_is_the_median_burst_free_rise():
  # A sawtooth of known rises in the withholding phase (updates 0..32), then a burst's spike.
  signal = np.zeros(49)
  rises = {16: 0.01, 20: 0.03, 24: 0.02, 28: 0.05}
  for s, r in rises.items():
    signal[s + 2] = r  # the peak two updates into the window, back to 0 after it
  signal[33] = 1.0  # the first burst (update 32) lies outside every baseline window
  np.testing.assert_allclose(retention.baseline_gain(signal, 32, 4), 0.025, rtol=1e-12)
  # A window's own start is its reference: a falling signal has a negative baseline.
  np.testing.assert_allclose(retention.baseline_gain(-np.arange(49.0), 32, 4), -1.0)
  assert math.isnan(retention.baseline_gain(signal, 32, 40))
  signal[20] = np.nan
  assert math.isnan(retention.baseline_gain(signal, 32, 4))


# Regression: burst_metrics, cell_summary and baseline_gain with their defaults, the numbers
# computed by the code before window, lag and falling were added.
_FIXED_SIGNAL = np.array([
    0.1, 0.3856, 0.2017, -0.2162, -0.2848, 0.108, 0.4502, 0.3303, -0.0065, -0.048, 0.2442,
    0.4225, 0.2499, 0.0505, 0.1967, 0.518, 0.5388, 0.2078, 0.0199, 0.3086, 0.7287, 0.7152,
    0.2911, 0.0605, 0.3698, 0.8202, 0.8258, 0.4264, 0.2107, 0.4814, 0.856, 0.8423, 0.5301,
    0.4167, 0.668, 0.9076, 0.8087, 0.5775, 0.6157, 0.8954, 1.002])
_FIXED_BURSTS = np.array([12, 18, 24, 30, 36])


def test_defaults_reproduce_fixed_numbers():
  rows = retention.burst_metrics(_FIXED_SIGNAL, _FIXED_BURSTS)
  expected = [  # burst, update, end, before, after, peak, gain, retained_fraction, half_life
      (0, 12, 18, 0.2499, 0.0199, 0.5388, 0.28889999999999993, -0.7961232260297683, math.nan),
      (1, 18, 24, 0.0199, 0.3698, 0.7287, 0.7088, 0.4936512415349887, 1.6300035840374192),
      (2, 24, 30, 0.3698, 0.856, 0.856, 0.48619999999999997, 1.0, math.inf),
      (3, 30, 36, 0.856, 0.8087, 0.9076, 0.05159999999999998, -0.9166666666666672, math.nan)]
  keys = ("burst", "update", "end", "before", "after", "peak", "gain", "retained_fraction",
          "half_life")
  assert len(rows) == len(expected)
  for row, values in zip(rows, expected):
    # The half-life comes from LAPACK's least squares (np.polyfit), whose last bit depends on
    # the CPU's BLAS kernels: equal to 1e-12, the rest exactly.
    np.testing.assert_array_equal([row[k] for k in keys[:-1]], values[:-1])
    np.testing.assert_allclose(row["half_life"], values[-1], rtol=1e-12, atol=0)
    assert row["lag_step"] == row["end"] and row["end_level"] == row["after"]
  assert retention.cell_summary(rows) == {
      "bursts": 4, "median_gain": 0.38754999999999995,
      "median_retained_fraction": -0.1512359922473898, "median_half_life": math.inf,
      "net_rise": 0.5588, "accumulates": True}
  assert retention.baseline_gain(_FIXED_SIGNAL, 12, 3) == 0.17529999999999998
  assert retention.baseline_gain(_FIXED_SIGNAL, 12, 3, start=0) == 0.37805


def _loss_after_burst(drops, recovery, before=3.0, b=5, end=15, steps=20):
  """A loss flat at `before` up to update b, then before - drops[k] at b+1+k, then rising by
  `recovery` per update to the next burst at `end`; flat after it. Shape (steps + 1,)."""
  loss = np.full(steps + 1, before)
  t = b + 1 + np.arange(len(drops))
  loss[t] = before - np.asarray(drops)
  for u in range(t[-1] + 1, end + 1):
    loss[u] = loss[u - 1] + recovery
  loss[end + 1:] = loss[end]
  return loss


def test_loss_drop_then_linear_recovery_gives_effectivity_and_retainability():
  loss = _loss_after_burst([1.0], 0.1)  # 2.0 at update 6, back up by 0.1 an update to 15
  bursts = np.array([5, 15])  # the second burst's window (to 25) lies past the run: dropped
  for lag, kept in ((0, 1.0), (1, 0.9), (4, 0.6), (9, 0.1)):
    (row,) = retention.burst_metrics(loss, bursts, window=10, lag=lag, falling=True)
    assert row["update"] == 5 and row["end"] == 15 and row["lag_step"] == 6 + lag
    np.testing.assert_allclose(row["gain"], 1.0, rtol=1e-12)  # effectivity
    np.testing.assert_allclose(row["retained_fraction"], kept, rtol=1e-9, atol=1e-12)
    assert row["before"] == 3.0 and row["peak"] == 2.0  # levels in the loss's own units
    np.testing.assert_allclose(row["after"], 2.0 + 0.1 * lag, rtol=1e-12)
  # Without a lag, after is read at the window end e = 15, 9 updates after the minimum.
  (row,) = retention.burst_metrics(loss, bursts, falling=True)
  np.testing.assert_allclose(row["retained_fraction"], 0.1, rtol=1e-9)
  assert 0 < row["half_life"] < math.inf
  # On the loss itself (not falling) the burst shows no rise at all.
  (raw,) = retention.burst_metrics(loss, bursts)
  assert math.isnan(raw["retained_fraction"]) and raw["gain"] <= 0


def test_window_shorter_than_the_minimum_picks_the_minimum_inside_it():
  loss = _loss_after_burst([0.4, 0.7, 1.0], 0.1)  # 2.6, 2.3, 2.0 at updates 6, 7, 8
  bursts = np.array([5, 15])
  (row,) = retention.burst_metrics(loss, bursts, window=2, lag=1, falling=True)
  assert row["peak"] == 2.3 and row["lag_step"] == 8
  np.testing.assert_allclose(row["gain"], 0.7, rtol=1e-12)
  np.testing.assert_allclose(row["retained_fraction"], 1.0 / 0.7, rtol=1e-12)
  (full,) = retention.burst_metrics(loss, bursts, window=3, falling=True)
  assert full["peak"] == 2.0
  np.testing.assert_allclose(full["gain"], 1.0, rtol=1e-12)
  # A window longer than the burst's own window stops at its end e.
  (long,) = retention.burst_metrics(loss, bursts, window=100, falling=True)
  assert long == full


def test_lag_past_the_window_end_gives_nan():
  loss = _loss_after_burst([1.0], 0.1)
  (row,) = retention.burst_metrics(loss, np.array([5, 15]), lag=10, falling=True)
  assert row["lag_step"] == 16 and math.isnan(row["after"])
  assert math.isnan(row["retained_fraction"])
  np.testing.assert_allclose(row["gain"], 1.0, rtol=1e-12)
  assert row["half_life"] == retention.burst_metrics(
      loss, np.array([5, 15]), falling=True)[0]["half_life"]  # still fitted up to e
  # Also past the run's end: no exception.
  (row,) = retention.burst_metrics(loss[:16], np.array([5]), lag=50, falling=True)
  assert row["lag_step"] == 56 and math.isnan(row["retained_fraction"])


@pytest.mark.parametrize("window,lag", [(None, None), (2, None), (None, 2), (3, 1)])
def test_falling_equals_the_negated_signal(window, lag):
  up = retention.burst_metrics(-_FIXED_SIGNAL, _FIXED_BURSTS, window=window, lag=lag)
  down = retention.burst_metrics(_FIXED_SIGNAL, _FIXED_BURSTS, window=window, lag=lag,
                                 falling=True)
  assert len(up) == len(down) == 4
  for u, d in zip(up, down):
    for key in ("burst", "update", "end", "lag_step", "gain", "retained_fraction", "half_life"):
      np.testing.assert_array_equal(d[key], u[key])
    for key in ("before", "after", "peak", "end_level"):
      np.testing.assert_array_equal(d[key], -u[key])
  np.testing.assert_equal(retention.cell_summary(down, falling=True),
                          retention.cell_summary(up))
  np.testing.assert_equal(
      retention.baseline_gain(_FIXED_SIGNAL, 12, 3, start=0, window=window, falling=True),
      retention.baseline_gain(-_FIXED_SIGNAL, 12, 3, start=0, window=window))
  np.testing.assert_equal(
      retention.baseline_metrics(_FIXED_SIGNAL, 12, 3, 0, window=window, lag=lag, falling=True),
      retention.baseline_metrics(-_FIXED_SIGNAL, 12, 3, 0, window=window, lag=lag))


def test_falling_cell_summary_net_rise_is_the_improvement():
  # Two bursts each drop the loss by 1.0 and keep it: a ratchet of 2.0.
  loss = np.array([5.0, 5.0, 5.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0])
  rows = retention.burst_metrics(loss, np.array([2, 5]), falling=True)
  assert [r["end"] for r in rows] == [5, 8]
  summary = retention.cell_summary(rows, falling=True)
  assert summary["net_rise"] == 2.0 and summary["median_gain"] == 1.0
  assert summary["median_retained_fraction"] == 1.0 and summary["accumulates"]
  # With a lag the level kept is still read at the last window's end.
  lagged = retention.burst_metrics(loss, np.array([2, 5]), lag=1, falling=True)
  assert retention.cell_summary(lagged, falling=True)["net_rise"] == 2.0


def _wiggling_loss(first_burst=32, steps=48):
  """A loss falling 0.01 an update with a wiggle of period 4 (0, -0.1, -0.05, 0 at t % 4), then
  a drop of 1.0 at the first burst. Shape (steps + 1,)."""
  t = np.arange(steps + 1)
  loss = 2.0 - 0.01 * t + np.array([0.0, -0.1, -0.05, 0.0])[t % 4]
  loss[first_burst + 1:] -= 1.0
  return loss


def test_baseline_metrics_over_a_periodic_wiggle():
  loss = _wiggling_loss()
  # Every window s..s+4 (s = 16, 20, 24, 28): the minimum at s+1, 0.11 below loss[s]; the drop
  # still held is 0.07 at s+2, 0.03 at s+3 and 0.04 at the end s+4.
  for lag, kept in ((None, 0.04), (1, 0.07), (2, 0.03)):
    out = retention.baseline_metrics(loss, 32, 4, lag=lag, falling=True)
    assert out["windows"] == 4
    np.testing.assert_allclose(out["median_gain"], 0.11, rtol=1e-9)
    np.testing.assert_allclose(out["median_retained_fraction"], kept / 0.11, rtol=1e-9)
  np.testing.assert_allclose(retention.baseline_gain(loss, 32, 4, falling=True), 0.11, rtol=1e-9)
  # window 1 changes nothing (the minimum is the first update); lag 4 reads past every window.
  out = retention.baseline_metrics(loss, 32, 4, window=1, lag=4, falling=True)
  np.testing.assert_allclose(out["median_gain"], 0.11, rtol=1e-9)
  assert math.isnan(out["median_retained_fraction"])
  # All eight windows from update 0 are the same; the burst's drop of 1.0 lies in none of them.
  out = retention.baseline_metrics(loss, 32, 4, start=0, falling=True)
  assert out["windows"] == 8
  np.testing.assert_allclose(out["median_gain"], 0.11, rtol=1e-9)
  (burst,) = retention.burst_metrics(loss, np.array([32]), window=4, falling=True)
  np.testing.assert_allclose(burst["gain"], 1.11, rtol=1e-9)
  # Varying the drop per window: the median over 0.11, 0.21, 0.31, 0.41.
  loss[[21, 25, 29]] -= [0.1, 0.2, 0.3]
  out = retention.baseline_metrics(loss, 32, 4, lag=1, falling=True)
  np.testing.assert_allclose(out["median_gain"], 0.26, rtol=1e-9)
  # 0.07 still held at s+2 of each: the median of 0.07 / gain over the middle two gains.
  np.testing.assert_allclose(out["median_retained_fraction"], (0.07 / 0.21 + 0.07 / 0.31) / 2,
                             rtol=1e-9)


def test_non_finite_loss_gives_nans_not_exceptions():
  loss = _loss_after_burst([1.0], 0.1)
  loss[9] = np.nan
  (row,) = retention.burst_metrics(loss, np.array([5, 15]), window=3, lag=2, falling=True)
  for key in ("before", "after", "peak", "gain", "retained_fraction", "half_life", "lag_step"):
    assert math.isnan(row[key])
  summary = retention.cell_summary([row], falling=True)
  assert math.isnan(summary["net_rise"]) and not summary["accumulates"]
  wiggle = _wiggling_loss()
  wiggle[22] = -np.inf
  out = retention.baseline_metrics(wiggle, 32, 4, window=2, lag=1, falling=True)
  assert out["windows"] == 4
  assert math.isnan(out["median_gain"]) and math.isnan(out["median_retained_fraction"])
  assert math.isnan(retention.baseline_gain(wiggle, 32, 4, falling=True))
  empty = retention.baseline_metrics(wiggle, 32, 40)
  assert empty["windows"] == 0 and math.isnan(empty["median_gain"])


def test_window_and_lag_are_checked():
  with pytest.raises(ValueError, match="window"):
    retention.burst_metrics(_FIXED_SIGNAL, _FIXED_BURSTS, window=0)
  with pytest.raises(ValueError, match="lag"):
    retention.baseline_metrics(_FIXED_SIGNAL, 12, 3, lag=-1)
