"""Tests of rare_tasks/core/checkpoints.py: a round trip, the latest step, the final step."""

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec

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
