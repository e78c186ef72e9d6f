"""Whether a model's parameters and optimizer state fit in this machine's memory: an estimate
checked, and printed, before any compute."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from rare_tasks.core.config import check
from rare_tasks.lm import ladder

# The share of a device's (or the host's) memory the state may take; the rest is activations.
USABLE_FRACTION = 0.9


def device_memory(device: jax.Device) -> int | None:
  """Bytes an accelerator may allocate (None where the backend does not say)."""
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  return (stats or {}).get("bytes_limit")


def host_memory() -> int:
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def shard_bytes(tree: Any) -> int:
  """Bytes one device holds of a tree of jax.ShapeDtypeStruct with shardings (the shard of
  every leaf: split dimensions divided, replicated ones whole)."""
  return sum(math.prod(a.sharding.shard_shape(a.shape)) * np.dtype(a.dtype).itemsize
             for a in jax.tree.leaves(tree))


def state_bytes_per_device(abstract_state: Any) -> int:
  """Parameter, AdamW and gradient bytes on one device: the trainer's state {"params", "opt"}
  as sharded, plus gradients sharded like the parameters."""
  return shard_bytes(abstract_state) + shard_bytes(abstract_state["params"])


def check_fits(preset: str, abstract_state: Any, total_params: int, members: int,
               devices: Sequence[jax.Device]) -> str:
  """ConfigError (field model.preset) unless the state fits; returns the estimate in words."""
  per_device = state_bytes_per_device(abstract_state)
  limit = device_memory(devices[0]) if devices[0].platform != "cpu" else None
  if limit is None:  # CPU devices share the host's memory
    need, have, where = per_device * len(devices), host_memory(), "host memory"
  else:
    need, have, where = per_device, limit, f"memory of one {devices[0].device_kind}"
  words = (f"parameters, gradients and AdamW state: {_gib(need)} of {_gib(have)} {where} "
           f"({ladder.size_name(total_params)} parameters x {members} member(s))")
  check(need <= USABLE_FRACTION * have, "model.preset", preset,
        f"a model whose state fits: {words}; choose a smaller preset, fewer members or more "
        "mesh.fsdp devices")
  return words


def _gib(n: float) -> str:
  return f"{n / 2**30:.3g} GiB"
