"""The placement of an ensemble group's (streams, members) axes on the devices.

One mesh axis, "ensemble", spans the devices. A group's arrays have leading axes (S, P); the one
of the two that wastes less padding is sharded. Ties go to members: then every device samples
every stream's inputs (repeated work), but on the default grid (2 streams x 6 members, 2 CPU
devices) that measured faster than one stream per device. Padding repeats the last entry and is
dropped afterwards. Members never communicate, so no collective is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

AXIS = "ensemble"


def ensemble_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over `devices` (default: all devices)."""
  devices = list(devices) if devices is not None else jax.devices()
  return jax.make_mesh((len(devices),), (AXIS,), devices=devices, axis_types=(AxisType.Auto,))


def _round_up(n: int, k: int) -> int:
  return -(-n // k) * k


def choose_layout(num_streams: int, num_members: int, num_devices: int) -> tuple[int, int, int]:
  """(sharded axis 0 or 1, padded streams, padded members) for an S x P ensemble on D devices."""
  pad_members = _round_up(num_members, num_devices) * num_streams
  pad_streams = _round_up(num_streams, num_devices) * num_members
  if pad_members <= pad_streams:
    return 1, num_streams, _round_up(num_members, num_devices)
  return 0, _round_up(num_streams, num_devices), num_members


def pad_leading(x: np.ndarray, streams: int, members: int | None = None) -> np.ndarray:
  """Pads axis 0 to `streams` (and axis 1 to `members`) by repeating the last entry."""
  widths = [(0, streams - x.shape[0])]
  if members is not None:
    widths.append((0, members - x.shape[1]))
  widths += [(0, 0)] * (x.ndim - len(widths))
  return np.pad(x, widths, mode="edge")


def ensemble_sharding(mesh: Mesh, axis: int) -> NamedSharding:
  """Sharding of an array whose axis `axis` (0: streams, 1: members) is split over devices."""
  return NamedSharding(mesh, PartitionSpec(*([None] * axis), AXIS))


def stream_sharding(mesh: Mesh, axis: int) -> NamedSharding:
  """Sharding of a per-stream array (leading axis S): split only when streams are sharded."""
  return NamedSharding(mesh, PartitionSpec(AXIS) if axis == 0 else PartitionSpec())
