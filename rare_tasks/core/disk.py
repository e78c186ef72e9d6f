"""Writes that fail for lack of space: one error that names the file and the space left.

A full disk reaches a run in several forms: an OSError with errno ENOSPC (no space), EDQUOT (a
quota) or EFBIG (a file size limit) from Python's own writes, and a ValueError or RuntimeError
whose text says RESOURCE_EXHAUSTED / "No space left on device" from orbax and tensorstore,
often chained under other errors raised by their background threads. `writing(path)` turns any
of them into DiskFull, an OSError whose message is one line: what could not be written, how much
space is free where, and that the same command resumes once space is freed. The run then ends
with that line; every write of the work directory is atomic or cut back, so what was written
before stays valid for the resume.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

# errno values that mean "no room for this write".
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# Texts of the same errors raised by tensorstore (orbax's storage) and other native code.
NO_SPACE_TEXTS = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
                  "File too large": errno.EFBIG}
_DETAIL = {errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "the file exceeds a size limit"}


class DiskFull(OSError):
  """A write that failed for lack of space: `path` (the file or folder written) and
  `free_bytes` (space left on its file system; None if unknown)."""

  def __init__(self, path: str | os.PathLike, free_bytes: int | None, detail: str = ""):
    # errno ENOSPC, strerror and filename as an OSError of the write itself would have them.
    super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    self.path = str(path)
    self.free_bytes = free_bytes
    self.detail = detail

  def __str__(self) -> str:
    where = mount_of(self.path)
    free = "unknown space" if self.free_bytes is None else size_text(self.free_bytes)
    detail = f"{self.detail}; " if self.detail else ""
    return (f"cannot write {self.path}: no space left on the device ({detail}{free} free on "
            f"{where}); free some space and run the same command again to resume")

  def __reduce__(self):
    return type(self), (self.path, self.free_bytes, self.detail)


def no_space(error: BaseException) -> bool:
  """True when `error`, or an error it was raised from or while handling, is a write that
  failed for lack of space (see the module docstring)."""
  return _no_space_errno(error) is not None


def _no_space_errno(error: BaseException) -> int | None:
  """The errno of the first no-space error in the chain of `error` (ENOSPC for a text match);
  None when there is none."""
  seen: set[int] = set()
  pending = [error]
  while pending:
    e = pending.pop()
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in NO_SPACE_ERRNOS:
      return e.errno
    code = _no_space_text(str(e))
    if code is not None:
      return code
    pending += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]
  return None


def _no_space_text(text: str) -> int | None:
  for t, code in NO_SPACE_TEXTS.items():
    if t in text:
      return code
  # RESOURCE_EXHAUSTED is also XLA's status for device memory running out: that is no disk.
  if "RESOURCE_EXHAUSTED" in text and "memory" not in text.lower():
    return errno.ENOSPC
  return None


def existing_parent(path: str | os.PathLike) -> Path:
  """`path` itself if it exists, else its nearest existing parent."""
  p = Path(path).absolute()
  while not p.exists() and p != p.parent:
    p = p.parent
  return p


def free_bytes(path: str | os.PathLike) -> int | None:
  """Bytes free (to this user) on the file system of `path` or of its nearest existing
  parent; None when that cannot be read."""
  try:
    return shutil.disk_usage(existing_parent(path)).free
  except OSError:
    return None


def mount_of(path: str | os.PathLike) -> str:
  """The mount point holding `path` (its nearest existing parent when it cannot be found)."""
  p = existing_parent(path)
  start = p
  try:
    while not os.path.ismount(p) and p != p.parent:
      p = p.parent
  except OSError:
    return str(start)
  return str(p)


def size_text(n: int) -> str:
  """A byte count for people: '0 bytes', '950 bytes', '212.0 kB', '3.4 GB'."""
  if n < 1000:
    return f"{n} bytes"
  for unit in ("kB", "MB", "GB", "TB"):
    n /= 1000
    if n < 1000 or unit == "TB":
      return f"{n:.1f} {unit}"
  raise AssertionError("unreachable")


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
  """Runs the block that writes `path`; an error of it that is a lack of space (no_space) is
  raised again as DiskFull(path, free space) from the original; other errors pass unchanged, and
  so does a DiskFull of a nested block (it names the more precise path)."""
  try:
    yield
  except DiskFull:
    raise
  except Exception as e:
    code = _no_space_errno(e)
    if code is None:
      raise
    raise DiskFull(path, free_bytes(path), _DETAIL.get(code, "")) from e
