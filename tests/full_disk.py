"""A full disk for chosen writes, injected with monkeypatch: the write takes part of its bytes,
as a real one does when the space runs out, then fails as it would (OSError ENOSPC; for an
orbax checkpoint, tensorstore's RESOURCE_EXHAUSTED). `inject` sets one up from a text spec, for
a subprocess driver."""

import errno
import os
import pathlib

import orbax.checkpoint as ocp

# What orbax raised when a checkpoint filled a file system (its text, shortened).
ORBAX_TEXT = ('RESOURCE_EXHAUSTED: Error writing "opt_state.0.mu/0.0" in OCDBT database at '
              'local file "{path}": Failed to write 22084 bytes to file 11: No space left on '
              "device [os_error_code='28']")


def no_space(path="") -> OSError:
  return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def fill_path_writes(monkeypatch, matches, after: int = 0) -> list[pathlib.Path]:
  """Path.write_text and Path.write_bytes of a path for which matches(path) is true write half
  of their data, then raise ENOSPC, from the (after + 1)th such write on; returns the paths
  refused so."""
  seen, refused = [], []
  for method in ("write_text", "write_bytes"):
    real = getattr(pathlib.Path, method)

    def write(self, data, *args, _real=real, **kwargs):
      if not matches(self):
        return _real(self, data, *args, **kwargs)
      seen.append(self)
      if len(seen) <= after:
        return _real(self, data, *args, **kwargs)
      refused.append(self)
      _real(self, data[:len(data) // 2], *args, **kwargs)
      raise no_space(self)

    monkeypatch.setattr(pathlib.Path, method, write)
  return refused


def fill_appends(monkeypatch, matches, at: str = "write", after: int = 0) -> None:
  """Appends through os.open / os.write to a path for which matches(path) is true: from the
  (after + 1)th opening on, the first os.write takes half its bytes and the next raises ENOSPC
  (at="write"), or every write goes through and os.fsync raises (at="fsync")."""
  real_open, real_write, real_fsync, real_close = os.open, os.write, os.fsync, os.close
  opened, full = [], {}  # full: fd -> bytes it may still take (None: any)

  def open_(path, flags, mode=0o777, **kwargs):
    fd = real_open(path, flags, mode, **kwargs)
    if matches(pathlib.Path(path)):
      opened.append(path)
      if len(opened) > after:
        full[fd] = None
    return fd

  def write(fd, data):
    if at != "write" or fd not in full:
      return real_write(fd, data)
    if full[fd] is None:  # the space left takes half, then there is none
      full[fd] = 0
      return real_write(fd, bytes(data[:len(data) // 2]))
    raise no_space()

  def fsync(fd):
    if at == "fsync" and fd in full:
      raise no_space()
    return real_fsync(fd)

  def close(fd):
    full.pop(fd, None)
    return real_close(fd)

  for name, fn in (("open", open_), ("write", write), ("fsync", fsync), ("close", close)):
    monkeypatch.setattr(os, name, fn)


def fill_checkpoints(monkeypatch, after: int = 0) -> None:
  """From the (after + 1)th orbax checkpoint save on, the save fails as tensorstore does when
  the disk is full."""
  real = ocp.CheckpointManager.save
  calls = []

  def save(self, step, *args, **kwargs):
    calls.append(step)
    if len(calls) <= after:
      return real(self, step, *args, **kwargs)
    raise ValueError(ORBAX_TEXT.format(path=f"{self.directory}/{step}.orbax-checkpoint-tmp"))

  monkeypatch.setattr(ocp.CheckpointManager, "save", save)


def inject(monkeypatch, spec: str) -> None:
  """A full disk from `spec`: "checkpoint:N" (orbax saves after the first N), "metrics.jsonl:N"
  (appends after the first N), or "<file name>:N" (whole-file writes of that name, written
  through a .tmp file, after the first N); "" for none."""
  if not spec:
    return
  name, after = spec.rsplit(":", 1)
  if name == "checkpoint":
    fill_checkpoints(monkeypatch, int(after))
  elif name.endswith(".jsonl"):
    fill_appends(monkeypatch, lambda p: p.name == name, after=int(after))
  else:
    fill_path_writes(monkeypatch, lambda p: p.name == name + ".tmp", int(after))
