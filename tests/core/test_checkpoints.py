"""Tests of rare_tasks/core/checkpoints.py: a round trip, the latest step, the final step,
damaged steps (truncated, flipped bytes, no commit marker) refused and set aside, a field added
since a checkpoint was written, and the fingerprint."""

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from rare_tasks.core import checkpoints
from rare_tasks.core.checkpoints import GroupCheckpoints


def _state(scale):
  return {"params": {"w": np.arange(6, dtype=np.float32).reshape(1, 2, 3) * scale},
          "opt_state": [np.full((1, 2), scale, np.int32)], "step": np.array(scale, np.int32)}


def test_round_trip_restores_the_latest_state_exactly(tmp_path):
  ckpt = GroupCheckpoints(tmp_path / "group")
  assert ckpt.latest_step() is None
  ckpt.save(10, _state(1))
  ckpt.save(20, _state(2))
  ckpt.close()
  again = GroupCheckpoints(tmp_path / "group")
  assert again.latest_step() == 20
  restored = again.restore(_state(0))
  np.testing.assert_array_equal(restored["params"]["w"], _state(2)["params"]["w"])
  np.testing.assert_array_equal(restored["opt_state"][0], _state(2)["opt_state"][0])
  assert int(restored["step"]) == 2
  again.close()


def test_keeps_at_most_two_checkpoints(tmp_path):
  ckpt = GroupCheckpoints(tmp_path / "g")
  for step in (1, 2, 3):
    ckpt.save(step, _state(step))
  ckpt.close()
  assert sorted(p.name for p in (tmp_path / "g").iterdir() if p.name.isdigit()) == ["2", "3"]


def test_a_sharded_state_restores_onto_another_sharding(tmp_path):
  mesh8 = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Auto,))
  mesh2 = jax.make_mesh((2,), ("x",), devices=jax.devices()[:2], axis_types=(AxisType.Auto,))
  a = jax.device_put(np.arange(32.0).reshape(16, 2), NamedSharding(mesh8, PartitionSpec("x")))
  ckpt = GroupCheckpoints(tmp_path / "c")
  ckpt.save(3, {"w": a, "step": np.asarray(3)})
  target = NamedSharding(mesh2, PartitionSpec(None, "x"))
  like = {"w": jax.ShapeDtypeStruct((16, 2), a.dtype, sharding=target),
          "step": np.zeros((), np.int64)}
  out = ckpt.restore(like)
  ckpt.close()
  assert out["w"].sharding == target and isinstance(out["step"], np.ndarray)
  np.testing.assert_array_equal(np.asarray(out["w"]), np.arange(32.0).reshape(16, 2))
  assert int(out["step"]) == 3


def _saved(tmp_path, steps=(1, 2)):
  ckpt = GroupCheckpoints(tmp_path / "g")
  for step in steps:
    ckpt.save(step, _big(step))
  ckpt.close()
  return GroupCheckpoints(tmp_path / "g")


def _big(scale):
  return {"w": (np.sin(np.arange(4096)) * scale).astype(np.float32),
          "step": np.array(scale, np.int32)}


def _largest_data_file(folder):
  return max((p for p in folder.rglob("*") if p.is_file() and "ocdbt.process_0" in str(p)),
             key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "no_commit_marker"])
def test_a_damaged_step_is_refused_naming_it_and_the_previous_one_restores(tmp_path, damage):
  ckpt = _saved(tmp_path)
  step2 = tmp_path / "g" / "2"
  if damage == "no_commit_marker":
    (step2 / checkpoints.COMMIT_MARKER).unlink()
  else:
    f = _largest_data_file(step2)
    data = bytearray(f.read_bytes())
    if damage == "truncated":
      data = data[:len(data) // 2]
    else:
      for i in range(len(data) // 2, len(data) // 2 + 8):  # inside the array's bytes
        data[i] ^= 0x5A
    f.write_bytes(bytes(data))
  with pytest.raises(checkpoints.CheckpointDamaged, match="step 2 cannot be restored"):
    ckpt.restore(_big(0), 2)
  np.testing.assert_array_equal(ckpt.restore(_big(0), 1)["w"], _big(1)["w"])
  moved = ckpt.set_aside(2)
  assert moved.exists() and moved.parent.name == "g" + checkpoints.DAMAGED_SUFFIX
  assert ckpt.steps() == [1] and ckpt.latest_step() == 1
  ckpt.close()


def test_a_checkpoint_without_a_field_added_since_restores_without_it(tmp_path):
  ckpt = GroupCheckpoints(tmp_path / "g")
  ckpt.save(3, {"params": np.ones(3, np.float32)})
  out = ckpt.restore({"params": np.zeros(3, np.float32), "diverged": np.zeros(2, np.int32)})
  ckpt.close()
  assert set(out) == {"params"}
  np.testing.assert_array_equal(out["params"], np.ones(3))


def test_the_fingerprint_is_the_same_for_host_and_device_arrays_and_sees_one_bit():
  tree = {"a": np.linspace(-1, 1, 33, dtype=np.float32), "b": np.arange(5, dtype=np.int32),
          "c": np.array([True, False, True]), "d": np.arange(4, dtype=np.int64)}
  host = checkpoints.fingerprint(tree)
  device = checkpoints.fingerprint({k: jax.numpy.asarray(v) for k, v in tree.items()
                                    if k != "d"})
  assert host[:3] == device
  flipped = tree["a"].copy()
  flipped.view(np.uint32)[7] ^= 1 << 3
  assert checkpoints.fingerprint({**tree, "a": flipped})[0] != host[0]
  # a known value: 1 + 2 + 3 + 4 words (little-endian int64 -> low words; high words 0)
  assert host[3] == 0 + 1 + 2 + 3
