"""Tests of rare_tasks/core/mesh.py: the CPU device count the tests run with, a replicated
array whole on every device, and host copies of sharded arrays."""

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


def test_a_host_copy_is_the_whole_array_in_numpy_whatever_its_sharding():
  mesh = jax.make_mesh((8,), ("x",))
  x = np.arange(48, dtype=np.float32).reshape(8, 6)
  split = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x")))
  tree = {"split": split, "whole": meshes.replicated(mesh), "host": x[:2], "none": None}
  tree["whole"] = jax.device_put(x, tree["whole"])
  copy = meshes.host_copy(tree)
  assert copy["none"] is None
  for name in ("split", "whole", "host"):
    assert isinstance(copy[name], np.ndarray)
  np.testing.assert_array_equal(copy["split"], x)
  np.testing.assert_array_equal(copy["whole"], x)
  np.testing.assert_array_equal(copy["host"], x[:2])
