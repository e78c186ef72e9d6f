"""Tests of rare_tasks/injection.py: burst sizes, the schedule's exact long-run frequency, and the
traced schedule against the host one."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rare_tasks import injection


def test_burst_size_example():
  assert injection.burst_size(1 / 64, 4, 256) == 16
  assert injection.burst_size(1 / 256, 1, 256) == 1


@pytest.mark.parametrize("f,gap,batch", [
    (1 / 100, 4, 256),  # n = 10.24, not whole
    (1 / 2, 4, 256),  # n = 512 > batch
    (1 / 1024, 1, 256),  # n = 0.25 < 1
])
def test_burst_size_rejects(f, gap, batch):
  with pytest.raises(ValueError) as info:
    injection.burst_size(f, gap, batch)
  message = str(info.value)
  assert message.startswith(f"frequency={f}, ")
  assert f"gap={gap}" in message and f"batch_size={batch}" in message
  assert "n = frequency * gap * batch_size" in message


@pytest.mark.parametrize("gap,f", [(1, 1 / 64), (4, 1 / 64), (16, 1 / 256), (64, 1 / 256),
                                   (8, 1 / 32)])
def test_schedule_delivers_long_run_frequency(gap, f):
  batch, withhold, periods = 256, 37, 5
  steps = withhold + periods * gap
  n = injection.burst_size(f, gap, batch)
  counts = injection.rare_examples_per_update(steps, withhold, gap, n)
  assert counts.shape == (steps,) and counts.dtype == np.int64
  assert counts[:withhold].sum() == 0
  injected = counts[withhold:]
  assert injected.sum() == f * batch * (steps - withhold)
  bursts = injection.burst_updates(steps, withhold, gap)
  assert bursts.dtype == np.int64
  np.testing.assert_array_equal(np.flatnonzero(counts), bursts)
  assert bursts[0] == withhold
  np.testing.assert_array_equal(np.diff(bursts), gap)
  np.testing.assert_array_equal(counts[bursts], n)


@pytest.mark.parametrize("gap,withhold", [(1, 0), (4, 6), (7, 3)])
def test_traced_schedule_is_the_host_schedule(gap, withhold):
  steps, size = 40, 5
  traced = jax.jit(jax.vmap(lambda t: injection.examples_at(t, withhold, jnp.int32(gap),
                                                            jnp.int32(size))))
  np.testing.assert_array_equal(traced(jnp.arange(steps)),
                                injection.rare_examples_per_update(steps, withhold, gap, size))


def test_burst_updates_refuses_a_bad_schedule():
  with pytest.raises(ValueError, match="gap=0"):
    injection.burst_updates(10, 0, 0)


@pytest.mark.parametrize("rate,gap,withhold", [(Fraction(2, 5), 1, 0), (Fraction(7, 3), 4, 5),
                                                (Fraction(1, 10), 10, 3), (Fraction(3), 2, 0),
                                                (Fraction(5, 64), 16, 1)])
def test_fractional_rates_are_spread_exactly(rate, gap, withhold):
  periods = 37
  steps = withhold + periods * gap
  counts = injection.counts_per_update(0, steps, withhold, gap, rate)
  assert counts.dtype == np.int64 and counts[:withhold].sum() == 0
  # Over whole periods the long-run rate is exact: floor(rate * gap * bursts) in all.
  assert counts.sum() == (rate * gap * periods).numerator // (rate * gap * periods).denominator
  assert abs(counts.sum() - rate * (steps - withhold)) < 1
  # Only burst updates carry instances, each floor(R) or ceil(R), R = rate * gap.
  bursts = injection.burst_updates(steps, withhold, gap)
  assert set(np.flatnonzero(counts)) <= set(bursts.tolist())
  per_burst = counts[bursts]
  assert per_burst.min() >= int(rate * gap)
  assert per_burst.max() <= injection.largest_burst(rate, gap)
  # Any prefix holds floor(rate * gap * bursts so far): never more than one instance off.
  for t in range(steps + 1):
    assert counts[:t].sum() == injection.examples_before(t, withhold, gap, rate)


def test_counts_do_not_depend_on_how_updates_are_chunked():
  rate, gap, withhold = Fraction(13, 7), 3, 4
  whole = injection.counts_per_update(0, 60, withhold, gap, rate)
  pieces = np.concatenate([injection.counts_per_update(a, b - a, withhold, gap, rate)
                           for a, b in [(0, 7), (7, 8), (8, 31), (31, 60)]])
  np.testing.assert_array_equal(whole, pieces)


def test_exact_rate_reads_a_float_by_its_decimal():
  assert injection.exact_rate(0.1) == Fraction(1, 10)
  assert injection.exact_rate(0.0125) * 32 == Fraction(2, 5)
  assert injection.exact_rate(3) == 3
