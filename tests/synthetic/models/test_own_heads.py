"""Tests of rare_tasks/synthetic/models/own_heads.py: each way of computing every example's own
head equals every head computed and the own one picked, in value and in gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rare_tasks.synthetic.models import own_heads


def _reference(hidden, heads, tasks):
  """Every head on every example (B, K, m), then each example's own."""
  every = jnp.einsum("bn,knm->bkm", hidden, heads)
  return every[jnp.arange(hidden.shape[0]), tasks]


def _case(batch, width, num_tasks, block, tasks, seed=0):
  r = np.random.default_rng(seed)
  return (jnp.asarray(r.standard_normal((batch, width)), jnp.float32),
          jnp.asarray(r.standard_normal((num_tasks, width, block)), jnp.float32),
          jnp.asarray(tasks, jnp.int32))


WAYS = {"gathered": own_heads.gathered, "own_outputs": own_heads.own_outputs,
        "grouped_chunk_1": lambda h, w, t: own_heads.grouped(h, w, t, 1),
        "grouped_chunk_4": lambda h, w, t: own_heads.grouped(h, w, t, 4)}
R = np.random.default_rng(1)
TASKS = {"random": R.integers(0, 5, 37), "one_task": np.full(37, 2), "last_task": np.full(37, 4),
         "power_law": np.minimum(R.zipf(1.5, 37) - 1, 4), "each_once": np.arange(5)}


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("tasks", TASKS)
@pytest.mark.parametrize("width", [3, 80])
def test_own_outputs_and_gradients_equal_every_head_picked(way, tasks, width):
  hidden, heads, t = _case(len(TASKS[tasks]), width, 5, 3, TASKS[tasks])
  np.testing.assert_allclose(jax.jit(WAYS[way])(hidden, heads, t), _reference(hidden, heads, t),
                             rtol=1e-5, atol=1e-5)
  weights = jnp.asarray(np.random.default_rng(2).standard_normal((len(t), 3)), jnp.float32)

  def loss(fn):
    return jax.jit(jax.grad(lambda h, w: jnp.sum(fn(h, w, t) * weights), argnums=(0, 1)))

  (dh, dw), (ref_dh, ref_dw) = loss(WAYS[way])(hidden, heads), loss(_reference)(hidden, heads)
  np.testing.assert_allclose(dh, ref_dh, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dw, ref_dw, rtol=1e-5, atol=1e-5)
  # A task without examples gets no gradient at all.
  absent = sorted(set(range(5)) - set(TASKS[tasks].tolist()))
  np.testing.assert_array_equal(np.asarray(dw)[absent], 0.0)


def test_own_outputs_gathers_for_narrow_encoders_and_groups_for_wide_ones():
  narrow = own_heads.GATHERED_UP_TO_WIDTH
  hidden, heads, t = _case(8, narrow, 4, 2, np.arange(8) % 4)
  gathered = jax.make_jaxpr(own_heads.own_outputs)(hidden, heads, t)
  assert "cumsum" not in str(gathered)
  hidden, heads, t = _case(8, narrow + 1, 4, 2, np.arange(8) % 4)
  assert "cumsum" in str(jax.make_jaxpr(own_heads.own_outputs)(hidden, heads, t))
