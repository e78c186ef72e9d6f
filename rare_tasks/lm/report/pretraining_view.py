"""What every section of the pretraining report reads: the run's config, run.json and its records,
grouped by member.

Built once after training, from metrics.jsonl and run.json; a section never reads the work
directory's files back itself.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np


@dataclasses.dataclass(frozen=True)
class PretrainingRun:
  """A finished (or partly trained) pretraining run.

  Attributes:
    config: the run's resolved config.
    wd: its work directory.
    info: run.json: the parameters, the source, the loss floor, the mesh, the platform...
    records: every metrics.jsonl record, in any order.
  """

  config: ml_collections.ConfigDict
  wd: Path
  info: dict[str, Any]
  records: list[dict[str, Any]]

  @functools.cached_property
  def members(self) -> dict[int, list[dict[str, Any]]]:
    """Each member's records in step order, by member."""
    return by_member(self.records)

  @functools.cached_property
  def finals(self) -> dict[int, dict[str, Any]]:
    """Each member's last record."""
    return {k: rows[-1] for k, rows in self.members.items()}

  @functools.cached_property
  def final_val(self) -> np.ndarray:
    """(members,) the validation loss of each member's last record, in member order."""
    return np.array([r["val_loss"] for r in self.finals.values()])

  @functools.cached_property
  def steps(self) -> int:
    """The furthest step any member reached (0 with no records)."""
    return max((r["step"] for r in self.finals.values()), default=0)


def by_member(records: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
  """Records per member, in step order."""
  out: dict[int, list[dict[str, Any]]] = {}
  for r in sorted(records, key=lambda r: (r["member"], r["step"])):
    out.setdefault(r["member"], []).append(r)
  return out
