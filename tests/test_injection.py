"""Tests of rare_tasks/injection.py: burst sizes, the schedule's exact long-run frequency, and the
traced schedule against the host one."""

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
  assert f"rare_frequency={f}" in message
  assert f"gap={gap}" in message and f"batch_size={batch}" in message
  assert "rare_frequency * gap * batch_size" in message


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
