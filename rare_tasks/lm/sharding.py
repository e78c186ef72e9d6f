"""The language-model mesh and where every array lives on it.

Three named axes: "member" splits an ensemble's members (no collective: members never
communicate), "data" and "fsdp" split the batch (the compiler inserts the gradient all-reduce),
and "fsdp" also splits each weight matrix by the partition rules below (the compiler gathers a
layer's weights where they are used). One CPU, 8 simulated devices, a GPU, a TPU slice and
several processes run the same program; only the mesh's shape changes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

AXES = ("member", "data", "fsdp")
BATCH_AXES = ("data", "fsdp")
# (pattern on a leaf's path, the mesh axis of each of its own dimensions after the member and
# layer axes). The first match wins; a dimension the fsdp size does not divide is replicated.
PARTITION_RULES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    (r"embedding$", ("fsdp", None)),  # (vocab, d): rows
    (r"lm_head/kernel$", (None, "fsdp")),  # (d, vocab): vocabulary columns
    (r"(q|k|v|gate|up)/kernel$", ("fsdp", None)),  # (d, out): the input dimension
    (r"(o|down)/kernel$", (None, "fsdp")),  # (in, d): the output dimension
    (r".*", ()),  # norm weights and counters: replicated
)


def member_axis_size(num_members: int, num_devices: int, fsdp: int) -> int:
  """The largest number of devices that splits the members evenly, of those fsdp leaves."""
  free = num_devices // fsdp
  return max(m for m in range(1, free + 1) if free % m == 0 and num_members % m == 0)


def make_mesh(devices: Sequence[jax.Device], members: int, fsdp: int) -> Mesh:
  """A (member, data, fsdp) mesh over `devices`; data takes the devices the others leave."""
  data = len(devices) // (members * fsdp)
  return jax.make_mesh((members, data, fsdp), AXES, devices=list(devices),
                       axis_types=(AxisType.Auto,) * 3)


def _path(key_path: Sequence[Any]) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in key_path)


def leaf_spec(path: str, shape: Sequence[int], fsdp: int) -> PartitionSpec:
  """The spec of an ensemble leaf (members first; under layers/, the layer axis next)."""
  lead = ["member"] + ([None] if "layers/" in path else [])
  rule = next(dims for pattern, dims in PARTITION_RULES if re.search(pattern, path))
  own = shape[len(lead):]
  dims = [axis if axis is None or own[i] % fsdp == 0 else None
          for i, axis in enumerate(rule[:len(own)])]
  spec = (lead + dims)[:len(shape)]
  return PartitionSpec(*spec)


def state_shardings(mesh: Mesh, abstract_state: Any) -> Any:
  """NamedShardings of a tree of ensemble arrays (each with a leading member axis)."""
  fsdp = mesh.shape["fsdp"]
  return jax.tree_util.tree_map_with_path(
      lambda kp, a: NamedSharding(mesh, leaf_spec(_path(kp), a.shape, fsdp)), abstract_state)


def batch_sharding(mesh: Mesh, leading: int = 0) -> NamedSharding:
  """Rows of token arrays (after `leading` axes) split over data x fsdp; shared by members."""
  return NamedSharding(mesh, PartitionSpec(*([None] * leading), BATCH_AXES))


def batch_split(mesh: Mesh) -> int:
  """How many ways a batch's rows are split."""
  return mesh.shape["data"] * mesh.shape["fsdp"]


def injected_sharding(mesh: Mesh) -> NamedSharding:
  """Per-member injected rows (k, P, B, H): members over "member", rows like the batch's."""
  return NamedSharding(mesh, PartitionSpec(None, "member", BATCH_AXES, None))
