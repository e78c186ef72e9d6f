"""Checkpoints of one ensemble with orbax: host arrays, or sharded device arrays.

Saving unpadded host arrays (the synthetic track), or sharded arrays restored onto the current
mesh (the language-model track), makes a checkpoint independent of the device count: a run
started on 8 devices resumes on 1, and the other way round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class GroupCheckpoints:
  """Save and restore the state of one group under `directory`."""

  def __init__(self, directory: Path, max_to_keep: int = 2):
    self._manager = ocp.CheckpointManager(
        Path(directory).absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             cleanup_tmp_directories=True),
        item_names=("state",))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any) -> None:
    """Writes `state` (a tree of host arrays) and waits until it is on disk."""
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                       force=True)
    self._manager.wait_until_finished()

  def restore(self, like: Any) -> Any:
    """The latest state shaped like the tree `like`: numpy arrays, except where a leaf of
    `like` is a jax.ShapeDtypeStruct with a sharding, which restores onto that sharding."""
    abstract = _abstract(like)
    restored = self._manager.restore(
        self._manager.latest_step(),
        args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    return restored["state"]

  def close(self) -> None:
    self._manager.close()


def _abstract(tree: Any) -> Any:
  return jax.tree.map(lambda a: a if isinstance(a, jax.ShapeDtypeStruct)
                      else np.zeros(np.shape(a), np.asarray(a).dtype), tree)
