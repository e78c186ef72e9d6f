"""Tests of rare_tasks/core/mesh.py: the CPU device count the tests run with, and a replicated
array whole on every device."""

import jax
import jax.numpy as jnp
import numpy as np

from rare_tasks.core import mesh as meshes


def test_an_explicit_xla_device_count_is_left_alone():
  # tests/conftest.py sets --xla_force_host_platform_device_count=8.
  assert meshes.use_cpu_cores(3) == 0
  assert len(jax.devices()) == 8


def test_a_replicated_array_is_whole_on_every_device():
  mesh = jax.make_mesh((8,), ("x",), devices=jax.devices())
  x = jnp.arange(32.0).reshape(8, 4)
  rep = jax.device_put(x, meshes.replicated(mesh))
  assert len(rep.addressable_shards) == 8
  for shard in rep.addressable_shards:
    np.testing.assert_array_equal(shard.data, x)


def test_any_process_of_one_process_is_the_flag_itself():
  assert meshes.any_process(True) is True and meshes.any_process(False) is False
  assert meshes.any_process(np.bool_(True)) is True
