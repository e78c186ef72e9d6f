"""Per-step traces of a group (traces/<group>/<last step>.npz): the rare tasks' signal every step.

Each training chunk writes one file, atomically, holding its steps and arrays with leading axes
(steps, S, P): the same (streams x members) layout as the group's cells. A resumed run rewrites
the chunks after its checkpoint under the same names, so a group's files always tile its steps.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from rare_tasks.core import disk, workdir

TRACES_DIR = "traces"


def write_chunk(wd: Path, group: str, steps: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
  """Writes the trace of `steps` (T,) for `group`; every array has leading axis T."""
  if not workdir.is_writer():
    return
  folder = Path(wd) / TRACES_DIR / group
  with disk.writing(folder):
    folder.mkdir(parents=True, exist_ok=True)
  buf = io.BytesIO()
  np.savez(buf, steps=np.asarray(steps, np.int64), **arrays)
  # Atomic, and a full disk is DiskFull naming the chunk with no partial file left.
  workdir.write_bytes(folder / f"{int(steps[-1]):09d}.npz", buf.getvalue())


def read_group(wd: Path, group: str) -> dict[str, np.ndarray] | None:
  """A group's whole trace, chunks concatenated in step order; None if it has none.

  Raises WorkdirError if the chunks leave a step out or repeat one (a damaged directory).
  """
  folder = Path(wd) / TRACES_DIR / group
  # (*.tmp.npz: a partial chunk left by an older version of write_chunk.)
  files = sorted(f for f in folder.glob("*.npz") if not f.name.endswith(".tmp.npz")) \
      if folder.exists() else []
  if not files:
    return None
  chunks = []
  for f in files:
    with np.load(f) as data:
      chunks.append({k: data[k] for k in data.files})
  out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
  steps = out["steps"]
  if not np.array_equal(steps, np.arange(steps[0], steps[0] + len(steps))):
    raise workdir.WorkdirError(f"{folder}: the trace chunks do not tile the steps; run the "
                               "study again with --overwrite to rebuild them")
  return out
