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
