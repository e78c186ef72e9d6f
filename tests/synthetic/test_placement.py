"""Tests of rare_tasks/synthetic/placement.py: layout choice, padding, the ensemble mesh and
shardings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rare_tasks.synthetic import placement


@pytest.mark.parametrize("streams,members,devices,expected", [
    (2, 6, 8, (1, 2, 8)),   # members padded 6 -> 8: 16 slots; streams would need 48
    (8, 1, 8, (0, 8, 1)),   # streams fill the devices exactly
    (3, 5, 8, (1, 3, 8)),   # 24 slots (members) against 40 (streams)
    (4, 4, 8, (1, 4, 8)),   # 32 slots either way: ties go to members
    (9, 8, 8, (1, 9, 8)),   # members divide the devices: no padding at all
    (7, 3, 4, (0, 8, 3)),   # 24 slots (streams) against 28 (members)
    (2, 6, 1, (1, 2, 6)),   # one device: nothing to pad
    (5, 1, 1, (1, 5, 1)),
])
def test_choose_layout(streams, members, devices, expected):
  layout = placement.choose_layout(streams, members, devices)
  assert layout == expected
  axis, s, p = layout
  assert (s, p)[axis] % devices == 0
  assert s >= streams and p >= members


def test_pad_leading_repeats_last_entry():
  x = np.arange(6).reshape(2, 3)
  np.testing.assert_array_equal(placement.pad_leading(x, 4),
                                [[0, 1, 2], [3, 4, 5], [3, 4, 5], [3, 4, 5]])
  y = np.arange(2 * 3 * 2).reshape(2, 3, 2)
  padded = placement.pad_leading(y, 3, 5)
  assert padded.shape == (3, 5, 2)
  np.testing.assert_array_equal(padded[:2, :3], y)
  np.testing.assert_array_equal(padded[2, :3], y[1])
  np.testing.assert_array_equal(padded[:2, 3], y[:, 2])
  np.testing.assert_array_equal(padded[:2, 4], y[:, 2])
  np.testing.assert_array_equal(padded[2, 4], y[1, 2])


def test_pad_leading_noop_when_already_sized():
  x = np.arange(12.0).reshape(3, 4)
  np.testing.assert_array_equal(placement.pad_leading(x, 3, 4), x)


def test_ensemble_mesh_over_all_devices():
  assert len(jax.devices()) == 8
  mesh = placement.ensemble_mesh()
  assert mesh.axis_names == (placement.AXIS,)
  assert mesh.shape[placement.AXIS] == 8
  assert list(mesh.devices.reshape(-1)) == jax.devices()


def test_ensemble_mesh_over_one_device():
  mesh = placement.ensemble_mesh(jax.devices()[:1])
  assert mesh.shape[placement.AXIS] == 1
  assert list(mesh.devices.reshape(-1)) == jax.devices()[:1]


@pytest.mark.parametrize("axis", [0, 1])
def test_ensemble_sharding_splits_the_chosen_axis(axis):
  mesh = placement.ensemble_mesh()
  shape = (8, 16, 3) if axis == 0 else (2, 8, 3)
  x = jax.device_put(jnp.arange(np.prod(shape), dtype=jnp.float32).reshape(shape),
                     placement.ensemble_sharding(mesh, axis))
  shard_shape = list(shape)
  shard_shape[axis] = 1
  assert {s.data.shape for s in x.addressable_shards} == {tuple(shard_shape)}
  assert len({s.device for s in x.addressable_shards}) == 8


def test_stream_sharding_splits_streams_only_when_they_are_the_sharded_axis():
  mesh = placement.ensemble_mesh()
  x = jnp.zeros((8, 4))
  split = jax.device_put(x, placement.stream_sharding(mesh, 0))
  assert {s.data.shape for s in split.addressable_shards} == {(1, 4)}
  whole = jax.device_put(x, placement.stream_sharding(mesh, 1))
  assert {s.data.shape for s in whole.addressable_shards} == {(8, 4)}

