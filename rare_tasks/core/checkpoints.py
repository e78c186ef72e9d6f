"""Checkpoints of one ensemble with orbax: host arrays, or sharded device arrays, each step
checked on restore.

Saving unpadded host arrays (the synthetic track), or sharded arrays restored onto the current
mesh (the language-model track), makes a checkpoint independent of the device count: a run
started on 8 devices resumes on 1, and the other way round.

Orbax commits a step atomically (a temporary folder renamed, then a commit marker), but it reads
back flipped bytes without complaint. So every save first records a fingerprint of the tree it
writes (per leaf, the sum of its 32-bit words modulo 2**32: any changed byte changes it) in
fingerprints.json beside the steps, and `restore` compares the tree it read against it. A step
whose commit marker is missing, whose files cannot be read or whose fingerprint differs raises
CheckpointDamaged; the engine then moves it aside (`set_aside`) and tries the step before.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from rare_tasks.core import disk, mesh, workdir

FINGERPRINTS_FILE = "fingerprints.json"
COMMIT_MARKER = "commit_success.txt"
# Where damaged steps are moved, beside the checkpoint folder: never deleted, never restored.
DAMAGED_SUFFIX = ".damaged"


class CheckpointDamaged(RuntimeError):
  """A checkpoint step that cannot be restored as it was saved."""


def _quiet_orbax_threads() -> None:
  """After orbax gave up on a step: its background reads and writes still in flight report into
  an event loop it has closed, and asyncio logs the tasks it never awaited; neither is news."""
  if not getattr(sys.unraisablehook, "quiets_closed_loop", False):
    sys.unraisablehook = _quiet_closed_loop(sys.unraisablehook)
  logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def _quiet_closed_loop(hook):
  """sys.unraisablehook without the tracebacks of reads still in flight when orbax gave up on a
  damaged step: tensorstore completes them later into the event loop orbax has closed, and
  each RuntimeError('Event loop is closed') is reported as unraisable."""
  def quiet(unraisable):
    value = unraisable.exc_value
    if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
      hook(unraisable)
  quiet.quiets_closed_loop = True
  return quiet


class GroupCheckpoints:
  """Save and restore the state of one group under `directory`."""

  def __init__(self, directory: Path, max_to_keep: int = 2):
    self.directory = Path(directory).absolute()
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             cleanup_tmp_directories=True),
        item_names=("state",), item_handlers={"state": ocp.StandardCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def steps(self) -> list[int]:
    """The committed steps, newest first."""
    return sorted(self._manager.all_steps(), reverse=True)

  def save(self, step: int, state: Any) -> None:
    """Writes `state` (a tree of host or device arrays) and waits until it is on disk; raises
    disk.DiskFull when the disk is full (the previous steps stay as they were)."""
    _check_room(self.directory / str(step), state)
    kept = {str(s) for s in self._manager.all_steps()}
    prints = {k: v for k, v in _read_prints(self.directory).items() if k in kept}
    prints[str(step)] = fingerprint(state)
    with disk.writing(self.directory / FINGERPRINTS_FILE):
      workdir.write_text(self.directory / FINGERPRINTS_FILE, json.dumps(prints) + "\n")
    try:
      with disk.writing(self.directory / str(step)):
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                           force=True)
        self._manager.wait_until_finished()
    except disk.DiskFull:
      _quiet_orbax_threads()  # the run ends with DiskFull's line, not their tracebacks
      raise

  def restore(self, like: Any, step: int | None = None) -> Any:
    """The state at `step` (default the latest) shaped like the tree `like`: numpy arrays,
    except where a leaf of `like` is a jax.ShapeDtypeStruct with a sharding, which restores
    onto that sharding. A dict key of `like` that the checkpoint lacks (a field added since it
    was written) is left out of the result. Raises CheckpointDamaged."""
    step = self.latest_step() if step is None else step
    restored, problem = self._read(like, step)
    # Each process reads its own shards: they agree, so that all of them fall back together.
    if mesh.any_process(problem is not None):
      raise CheckpointDamaged(problem or f"step {step} cannot be restored on another process")
    expected = _read_prints(self.directory).get(str(step))
    if expected is not None and fingerprint(restored) != expected:
      raise CheckpointDamaged(f"step {step} cannot be restored: its contents differ from "
                              "what was saved (fingerprint mismatch)")
    return restored

  def _read(self, like: Any, step: int) -> tuple[Any, str | None]:
    """(the tree at `step`, None), or (None, why it cannot be read) on this process."""
    if not (self.directory / str(step) / COMMIT_MARKER).exists():
      return None, f"step {step} cannot be restored: its commit marker {COMMIT_MARKER} is missing"
    try:
      stored = self._manager.item_metadata(step)["state"]
      abstract = _abstract(_pruned(like, stored))
      return self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"], None
    except Exception as e:  # orbax and tensorstore raise many kinds for unreadable files
      _quiet_orbax_threads()
      return None, (f"step {step} cannot be restored: {type(e).__name__}: "
                    f"{' '.join(str(e).split())[:200]}")

  def set_aside(self, step: int) -> Path:
    """Moves a damaged step out of the checkpoints (process 0; others wait): -> where."""
    target = self.directory.with_name(self.directory.name + DAMAGED_SUFFIX) / (
        f"{step}-{time.strftime('%Y%m%dT%H%M%S')}")
    if workdir.is_writer():
      target.parent.mkdir(parents=True, exist_ok=True)
      shutil.move(str(self.directory / str(step)), str(target))
    workdir.barrier("rare_tasks: damaged checkpoint set aside")
    self._manager.reload()
    return target

  def close(self) -> None:
    self._manager.close()


# Room a checkpoint needs beyond its arrays' bytes: orbax's index and metadata files.
CHECKPOINT_OVERHEAD_BYTES = 64 * 1024


def _check_room(path: Path, state: Any) -> None:
  """DiskFull before orbax starts, when the file system has less room than the checkpoint's
  arrays need (this process's share): orbax on a full disk prints its own tracebacks from
  background threads before it raises, and leaves a half-written step to clean up."""
  need = CHECKPOINT_OVERHEAD_BYTES + sum(
      sum(s.data.nbytes for s in leaf.addressable_shards if s.replica_id == 0)
      if isinstance(leaf, jax.Array) else np.asarray(leaf).nbytes
      for leaf in jax.tree.leaves(state))
  free = disk.free_bytes(path)
  if mesh.any_process(free is not None and free < need):  # all processes stop, or none
    raise disk.DiskFull(path, free, f"a checkpoint of about {disk.size_text(need)}")


def fingerprint(tree: Any) -> list[int]:
  """Per leaf (in tree order), the sum of its 32-bit words modulo 2**32 (narrower items widened
  to 32 bits, wider split): the same for a numpy array and a device array of the same values.
  The device arrays are summed in one compiled program."""
  leaves = jax.tree.leaves(tree)
  on_device = [i for i, leaf in enumerate(leaves) if isinstance(leaf, jax.Array)]
  sums = np.asarray(_device_sums([leaves[i] for i in on_device])) if on_device else []
  device = dict(zip(on_device, (int(v) for v in sums)))
  return [device[i] if i in device
          else int(np.sum(_words(np.asarray(leaf)), dtype=np.uint64) % (1 << 32))
          for i, leaf in enumerate(leaves)]


def _words(a: np.ndarray) -> np.ndarray:
  a = np.ascontiguousarray(a)
  if a.dtype.itemsize >= 4:
    return a.reshape(-1).view(np.uint32)
  return a.reshape(-1).view(np.dtype(f"u{a.dtype.itemsize}")).astype(np.uint32)


@jax.jit
def _device_sums(leaves: list[jax.Array]) -> jax.Array:
  """(len(leaves),) uint32: each leaf's words summed modulo 2**32."""
  def words(a):
    if a.dtype == jnp.bool_:
      return a.astype(jnp.uint32)
    if a.dtype.itemsize < 4:
      return jax.lax.bitcast_convert_type(a, jnp.dtype(f"u{a.dtype.itemsize}")).astype(
          jnp.uint32)
    return jax.lax.bitcast_convert_type(a, jnp.uint32)  # 64-bit items: two words each
  return jnp.stack([jnp.sum(words(a), dtype=jnp.uint32) for a in leaves])


def _read_prints(directory: Path) -> dict[str, list[int]]:
  prints = workdir.read_json(directory / FINGERPRINTS_FILE)
  return prints if isinstance(prints, dict) else {}


def _pruned(like: Any, stored: Any) -> Any:
  """`like` without the dict keys the stored tree (orbax's metadata of it) lacks."""
  if isinstance(like, dict) and hasattr(stored, "keys"):
    return {k: _pruned(v, stored[k]) for k, v in like.items() if k in stored.keys()}
  return like


def _abstract(tree: Any) -> Any:
  return jax.tree.map(lambda a: a if isinstance(a, jax.ShapeDtypeStruct)
                      else np.zeros(np.shape(a), np.asarray(a).dtype), tree)
