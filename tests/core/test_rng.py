"""Tests of rare_tasks/core/rng.py: both generators draw per key under vmap and over a mesh of
several devices what one key draws alone."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from rare_tasks.core import rng


def _normals(seeds, generator):
  return jax.vmap(lambda s: jax.random.normal(rng.key(s, generator), (3, 5)))(seeds)


@pytest.mark.parametrize("generator", rng.GENERATORS)
def test_vmapped_keys_draw_what_each_key_draws_alone(generator):
  seeds = jnp.arange(4)
  together = np.asarray(jax.jit(_normals, static_argnums=1)(seeds, generator))
  for i in range(4):
    alone = jax.random.normal(rng.key(i, generator), (3, 5))
    np.testing.assert_array_equal(together[i], alone)


@pytest.mark.parametrize("generator", rng.GENERATORS)
def test_draws_over_eight_devices_compile_and_equal_one_device(generator):
  # philox4x32 failed to compile over several devices with jaxlib's own mulhi lowering.
  mesh = jax.make_mesh((8,), ("members",), axis_types=(jax.sharding.AxisType.Auto,))
  seeds = jax.device_put(jnp.arange(8), NamedSharding(mesh, PartitionSpec("members")))
  sharded = jax.jit(_normals, static_argnums=1)(seeds, generator)
  assert len(sharded.sharding.device_set) == 8
  one = jax.jit(_normals, static_argnums=1)(jnp.arange(8), generator)
  np.testing.assert_array_equal(np.asarray(sharded), np.asarray(one))


def test_the_generators_draw_different_streams():
  a, b = (jax.random.normal(rng.key(0, g), (4,)) for g in rng.GENERATORS)
  assert not np.allclose(a, b)


def test_philox_keeps_its_golden_draws():
  # JAX's philox4x32 stream, which every run made with it depends on.
  np.testing.assert_allclose(jax.random.normal(rng.key(0, "philox4x32"), (3,)),
                             [-0.0657746, 0.01706673, 0.43954915], rtol=1e-6)


def test_the_high_half_product_is_exact():
  x = jnp.array([0xFFFFFFFF, 0x12345678, 3, 0], jnp.uint32)
  y = jnp.array([0xFFFFFFFF, 0x9ABCDEF0, 5, 7], jnp.uint32)
  want = [(int(a) * int(b)) >> 32 for a, b in zip(np.asarray(x), np.asarray(y))]
  assert np.asarray(jax.jit(jax.lax.mulhi)(x, y)).tolist() == want


def test_an_unknown_generator_is_refused():
  with pytest.raises(ValueError, match="'rbg' is not one of"):
    rng.key(0, "rbg")
