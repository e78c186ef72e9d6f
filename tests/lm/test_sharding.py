"""The language-model mesh: the member split, the axis sizes, each partition rule, the shardings
of a real ensemble state and the batch's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rare_tasks.lm import sharding, trainer
from rare_tasks.lm.ladder import Shape
from rare_tasks.lm.model import Model, ModelSpec

SPEC = ModelSpec(Shape(d_model=16, num_layers=2, num_heads=2, mlp_hidden=64), vocab_size=64)


@pytest.mark.parametrize("members, devices, fsdp, expected", [
    (8, 8, 1, 8), (3, 8, 1, 1), (8, 2, 1, 2), (4, 8, 2, 4), (6, 8, 1, 2), (1, 8, 1, 1),
    (12, 8, 2, 4), (8, 8, 8, 1), (2, 1, 1, 1),
])
def test_member_axis_size(members, devices, fsdp, expected):
  assert sharding.member_axis_size(members, devices, fsdp) == expected


@pytest.mark.parametrize("members, fsdp, data", [(1, 1, 8), (8, 1, 1), (2, 2, 2), (1, 8, 1),
                                                 (4, 2, 1)])
def test_make_mesh_axis_sizes(members, fsdp, data):
  mesh = sharding.make_mesh(jax.devices(), members, fsdp)
  assert mesh.axis_names == sharding.AXES
  assert dict(mesh.shape) == {"member": members, "data": data, "fsdp": fsdp}
  assert mesh.devices.size == 8
  assert sharding.batch_split(mesh) == data * fsdp


def test_make_mesh_over_some_devices():
  mesh = sharding.make_mesh(jax.devices()[:4], 2, 1)
  assert dict(mesh.shape) == {"member": 2, "data": 2, "fsdp": 1}
  assert set(mesh.devices.flat) == set(jax.devices()[:4])


@pytest.mark.parametrize("path, shape, expected", [
    ("embedding", (4, 64, 16), P("member", "fsdp", None)),
    ("layers/attention/q/kernel", (4, 2, 16, 16), P("member", None, "fsdp", None)),
    ("layers/attention/k/kernel", (4, 2, 16, 16), P("member", None, "fsdp", None)),
    ("layers/attention/v/kernel", (4, 2, 16, 16), P("member", None, "fsdp", None)),
    ("layers/mlp/gate/kernel", (4, 2, 16, 64), P("member", None, "fsdp", None)),
    ("layers/mlp/up/kernel", (4, 2, 16, 64), P("member", None, "fsdp", None)),
    ("layers/attention/o/kernel", (4, 2, 16, 16), P("member", None, None, "fsdp")),
    ("layers/mlp/down/kernel", (4, 2, 64, 16), P("member", None, None, "fsdp")),
    ("lm_head/kernel", (4, 16, 64), P("member", None, "fsdp")),
    ("final_norm/weight", (4, 16), P("member")),
    ("layers/attention_norm/weight", (4, 2, 16), P("member", None)),
    ("layers/attention/q_norm/weight", (4, 2, 16), P("member", None)),
    ("opt/1/0/.count", (4,), P("member")),
])
def test_leaf_spec_rules(path, shape, expected):
  assert sharding.leaf_spec(path, shape, 2) == expected
  assert sharding.leaf_spec("params/" + path, shape, 2) == expected


def test_a_dimension_fsdp_does_not_divide_is_replicated():
  assert sharding.leaf_spec("embedding", (4, 50, 16), 4) == P("member", None, None)
  assert sharding.leaf_spec("embedding", (4, 52, 16), 4) == P("member", "fsdp", None)
  assert sharding.leaf_spec("lm_head/kernel", (4, 16, 50), 4) == P("member", None, None)
  assert sharding.leaf_spec("layers/attention/q/kernel", (4, 2, 6, 16), 4) == P(
      "member", None, None, None)
  assert sharding.leaf_spec("layers/mlp/down/kernel", (4, 2, 64, 6), 4) == P(
      "member", None, None, None)
  # The member and layer axes are never split by fsdp, whatever their size.
  assert sharding.leaf_spec("layers/mlp/up/kernel", (3, 5, 16, 64), 4) == P(
      "member", None, "fsdp", None)


@pytest.mark.parametrize("param", ["layers/mlp/gate/kernel", "layers/attention/o/kernel",
                                   "embedding", "lm_head/kernel", "layers/mlp_norm/weight"])
@pytest.mark.parametrize("prefix", ["1/0/mu/", "1/0/nu/", "opt/1/0/.mu/"])
def test_optimizer_state_is_sharded_like_its_parameter(param, prefix):
  shape = {"embedding": (4, 64, 16), "lm_head/kernel": (4, 16, 64),
           "layers/mlp_norm/weight": (4, 2, 16)}.get(param, (4, 2, 16, 64))
  assert sharding.leaf_spec(prefix + param, shape, 2) == sharding.leaf_spec(param, shape, 2)


def _abstract_state(members: int):
  tx = trainer.optimizer(trainer.TrainSpec(steps=10, learning_rate=1e-3))

  def init(seeds):
    params = jax.vmap(lambda s: Model(SPEC).init(jax.random.key(s)))(seeds)
    return {"params": params, "opt": jax.vmap(tx.init)(params)}

  return jax.eval_shape(init, jax.ShapeDtypeStruct((members,), jnp.uint32))


def test_state_shardings_of_a_real_ensemble_state():
  mesh = sharding.make_mesh(jax.devices(), 2, 2)
  abstract = _abstract_state(4)
  shardings = sharding.state_shardings(mesh, abstract)
  assert jax.tree.structure(shardings) == jax.tree.structure(abstract)
  assert all(isinstance(s, NamedSharding) and s.mesh == mesh for s in jax.tree.leaves(shardings))
  p = shardings["params"]
  assert p["embedding"].spec == P("member", "fsdp", None)
  assert p["lm_head"]["kernel"].spec == P("member", None, "fsdp")
  assert p["layers"]["attention"]["q"]["kernel"].spec == P("member", None, "fsdp", None)
  assert p["layers"]["attention"]["o"]["kernel"].spec == P("member", None, None, "fsdp")
  assert p["layers"]["mlp"]["down"]["kernel"].spec == P("member", None, None, "fsdp")
  assert p["layers"]["mlp_norm"]["weight"].spec == P("member", None)
  assert p["final_norm"]["weight"].spec == P("member")
  # Every AdamW moment is sharded as its parameter.
  by_path = {sharding._path(kp): s.spec
             for kp, s in jax.tree_util.tree_leaves_with_path(shardings)}
  moments = [k for k in by_path if k.startswith("opt/") and ("mu/" in k or "nu/" in k)]
  assert len(moments) == 2 * len(jax.tree.leaves(abstract["params"]))
  for k in moments:
    param = "params/" + k.split("mu/" if "mu/" in k else "nu/", 1)[1]
    assert by_path[k] == by_path[param], k
  # Each device holds a member's share of each matrix: 4 members over 2, rows over fsdp 2.
  emb = abstract["params"]["embedding"]
  assert p["embedding"].shard_shape(emb.shape) == (2, 32, 16)


def test_a_state_placed_with_its_shardings_splits_as_the_specs_say():
  mesh = sharding.make_mesh(jax.devices(), 2, 4)
  abstract = _abstract_state(2)
  shardings = sharding.state_shardings(mesh, abstract)
  kernel = abstract["params"]["layers"]["mlp"]["gate"]["kernel"]  # (2, 2, 16, 64)
  x = jax.device_put(jnp.zeros(kernel.shape, kernel.dtype),
                     shardings["params"]["layers"]["mlp"]["gate"]["kernel"])
  assert {s.data.shape for s in x.addressable_shards} == {(1, 2, 4, 64)}


def test_batch_sharding_splits_rows_over_data_and_fsdp():
  mesh = sharding.make_mesh(jax.devices(), 2, 2)
  s = sharding.batch_sharding(mesh, leading=1)
  assert s.spec == P(None, ("data", "fsdp"))
  assert sharding.batch_sharding(mesh).spec == P(("data", "fsdp"))
  batches = jax.device_put(np.arange(3 * 8 * 5).reshape(3, 8, 5), s)
  shards = batches.addressable_shards
  assert {sh.data.shape for sh in shards} == {(3, 2, 5)}  # 8 rows over 2 x 2
  # The members share the batch: devices differing only in the member axis hold the same rows.
  rows = {sh.device: tuple(np.asarray(sh.data)[0, :, 0]) for sh in shards}
  grid = mesh.devices
  for d in range(2):
    for f in range(2):
      assert rows[grid[0, d, f]] == rows[grid[1, d, f]]
  assert len({rows[grid[0, d, f]] for d in range(2) for f in range(2)}) == 4


def test_batch_split():
  assert sharding.batch_split(sharding.make_mesh(jax.devices(), 2, 2)) == 4
  assert sharding.batch_split(sharding.make_mesh(jax.devices(), 8, 1)) == 1
  assert sharding.batch_split(sharding.make_mesh(jax.devices(), 1, 8)) == 8
