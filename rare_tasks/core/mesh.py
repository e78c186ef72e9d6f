"""The devices every study runs on: one JAX device per CPU core, joining the processes of a
multi-process run, the replicated sharding of a mesh, and what processes agree on or copy to
the host together. How a track lays its arrays on a mesh is the track's
(`rare_tasks.synthetic.placement`, `rare_tasks.lm.sharding`).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def use_cpu_cores(count: int = 0) -> int:
  """On the CPU platform, one JAX device per core (or `count`), so ensembles use every core.

  Must run before JAX starts its backends; leaves an explicit
  --xla_force_host_platform_device_count in XLA_FLAGS alone. Accelerators are not affected.
  Returns the CPU device count asked for (0 when left to XLA_FLAGS).
  """
  if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
    return 0
  count = count or os.cpu_count() or 1
  jax.config.update("jax_num_cpu_devices", count)
  return count


def start_processes(coordinator_address: str | None = None, num_processes: int | None = None,
                    process_id: int | None = None) -> None:
  """Joins this process to the others of a multi-process run (before any JAX computation);
  jax.devices() then lists every process's devices. CPU processes exchange collectives over
  gloo (TCP), so the same program runs on several CPU hosts."""
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address, num_processes, process_id)


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device of `mesh` holds the whole array."""
  return NamedSharding(mesh, PartitionSpec())


def any_process(flag: bool) -> bool:
  """Whether `flag` is true on any process: the same answer everywhere, so that processes take
  a decision together (a collective call in a multi-process run)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(np.any(multihost_utils.process_allgather(np.int32(bool(flag)))))


def host_copy(tree: Any) -> Any:
  """A numpy copy of every array of `tree`, whole on every process. An array split over the
  devices of several processes is gathered first: a collective call, which every process makes
  for the same arrays in the same order."""
  return jax.tree.map(_host_copy, tree)


def _host_copy(a: Any) -> np.ndarray:
  if isinstance(a, jax.Array) and not a.is_fully_addressable and not a.is_fully_replicated:
    return multihost_utils.process_allgather(a, tiled=True)
  return np.asarray(a)
