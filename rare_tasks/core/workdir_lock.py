"""One writer per work directory: a lock file that refuses a second run while the first lives.

Two runs on one --workdir would both append to metrics.jsonl and overwrite each other's
checkpoints and reports. `held` keeps `.rare_tasks.lock` (JSON: pid, host, started, token,
heartbeat) in the work directory for as long as a run lasts, and a second run is refused at once
with a WorkdirError naming the holder's process and host. A run killed by SIGKILL cannot remove
its lock, so the next run takes a stale lock over:
  * on the same host (same hostname and pid namespace), when the holder's pid is gone, or now
    belongs to a process started at another time (the start time in /proc guards pid reuse);
  * from another host, whose pids cannot be checked, when the holder's heartbeat (a thread
    rewrites the lock every HEARTBEAT_S) is older than LEASE_S.
Only process 0 of a multi-process run takes the lock; the others learn from it whether it did.

Taking it is race-free between processes that start together: the lock is created with
O_CREAT | O_EXCL, so one of them creates it and the others find it live. A stale lock is first
renamed to a name of the taker's own (of two takers, one rename finds the file), checked to be
the very file judged stale, and only then is the new lock created, again with O_EXCL.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils

from rare_tasks.core.progress import log
from rare_tasks.core.workdir import LOCK_FILE, WorkdirError, is_writer

# The holder rewrites its heartbeat this often (seconds)...
HEARTBEAT_S = 10.0
# ...and a lock of another host whose heartbeat is older than this is stale.
LEASE_S = 60.0
# A lock just created is empty until its creator writes it: a read retries this many times.
_READ_TRIES = 5
_READ_RETRY_S = 0.02
_ACQUIRE_TRIES = 5


class _Seen(NamedTuple):
  """A lock file as read: its bytes, its record (None when unreadable), identity and age."""
  raw: bytes
  record: dict[str, Any] | None
  inode: tuple[int, int]
  mtime: float


class Lock:
  """A held work-directory lock: a daemon thread refreshes its heartbeat until `release`."""

  def __init__(self, path: Path, fd: int, record: dict[str, Any], heartbeat_s: float):
    self.path = path
    self.record = record
    self._fd = fd
    self._inode = _inode(os.fstat(fd))
    self._stop = threading.Event()
    self._mutex = threading.Lock()  # the heartbeat's write and release's close never overlap
    self._thread = threading.Thread(target=self._beat_every, args=(heartbeat_s,), daemon=True,
                                    name=f"rare_tasks lock heartbeat {path}")
    self._thread.start()

  def release(self) -> None:
    """Stops the heartbeat and removes the lock file (if it is still this lock's)."""
    self._stop.set()
    self._thread.join()
    with self._mutex:
      if self._fd < 0:
        return
      try:
        if self._ours():
          os.unlink(self.path)
      except OSError:  # left behind, the lock is stale: the next run takes it over
        pass
      finally:
        os.close(self._fd)
        self._fd = -1

  def _ours(self) -> bool:
    try:
      return _inode(os.stat(self.path)) == self._inode
    except FileNotFoundError:
      return False

  def _beat_every(self, interval: float) -> None:
    while not self._stop.wait(interval):
      with self._mutex:
        if self._stop.is_set():
          return
        try:
          if not self._ours():
            log.warning("%s: this run's lock was removed, or taken over by another process "
                        "when its heartbeat was late; two runs may now write this work directory",
                        self.path.parent)
            return
          self.record["heartbeat"] = round(time.time(), 3)
          _write(self._fd, self.record)
        except OSError:  # a full disk or a network hiccup: the next beat tries again
          pass


@contextlib.contextmanager
def held(workdir_path: str | os.PathLike, *, heartbeat_s: float | None = None,
         lease_s: float | None = None) -> Iterator[None]:
  """Holds the lock of `workdir_path` (creating the directory) for the body of the `with`.

  Only process 0 of a multi-process run takes it; every process raises WorkdirError when
  process 0 was refused. The lock is released when the body ends, by an exception too; a
  directory this call created and nothing filled (a run refused for its config) is removed.
  heartbeat_s, lease_s: default HEARTBEAT_S and LEASE_S.
  """
  path = Path(workdir_path)
  lock, error, created = None, None, []
  if is_writer():
    created = _missing(path)
    try:
      lock = acquire(path, heartbeat_s=heartbeat_s, lease_s=lease_s)
    except WorkdirError as e:
      error = e
  try:
    _agree(path, error)
    yield
  finally:
    if lock is not None:
      lock.release()
    for directory in created:
      try:
        directory.rmdir()
      except OSError:  # not empty: the run wrote there
        break


def acquire(workdir_path: str | os.PathLike, *, heartbeat_s: float | None = None,
            lease_s: float | None = None) -> Lock:
  """Takes the lock of `workdir_path` (creating the directory), taking a stale one over.

  Raises WorkdirError naming the process and host that hold it when a live process does, or
  when the directory cannot be created or written.
  """
  path = Path(workdir_path)
  heartbeat_s = HEARTBEAT_S if heartbeat_s is None else heartbeat_s
  lease_s = LEASE_S if lease_s is None else lease_s
  if path.exists() and not path.is_dir():
    raise WorkdirError(f"{path} is a file, not a work directory; choose a new or empty --workdir")
  try:
    path.mkdir(parents=True, exist_ok=True)
    lock_path = path / LOCK_FILE
    for _ in range(_ACQUIRE_TRIES):
      lock = _create(lock_path, heartbeat_s)
      if lock is not None:
        return lock
      seen = _read(lock_path)
      if seen is None:  # released since: try again
        continue
      why = _stale(seen, lease_s)
      if why is None:
        raise WorkdirError(_in_use(path, seen, lease_s))
      lock = _take_over(lock_path, seen, heartbeat_s)
      if lock is not None:
        record = seen.record or {}
        log.info("%s: took over the stale lock of process %s on host %s (%s)", path,
                 record.get("pid", "?"), record.get("host", "?"), why)
        return lock
  except OSError as e:
    raise WorkdirError(f"{path}: cannot create or write the work directory "
                       f"({e.strerror or e}{': ' + str(e.filename) if e.filename else ''})"
                       ) from e
  raise WorkdirError(f"{path}: its lock {LOCK_FILE} changed hands {_ACQUIRE_TRIES} times while "
                     "this run tried to take it; is another run starting on it?")


def _create(lock_path: Path, heartbeat_s: float) -> Lock | None:
  """The lock, created afresh (O_EXCL: of processes racing, one creates it); None if it exists."""
  try:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
  except FileExistsError:
    return None
  pid = os.getpid()
  record = {"pid": pid, "host": socket.gethostname(), "pid_namespace": _pid_namespace(),
            "pid_start": _start_time(pid), "token": secrets.token_hex(16),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "heartbeat": round(time.time(), 3)}
  try:
    _write(fd, record)
  except BaseException:
    os.close(fd)
    os.unlink(lock_path)
    raise
  return Lock(lock_path, fd, record, heartbeat_s)


def _write(fd: int, record: dict[str, Any]) -> None:
  # In place through the holder's descriptor: once a taker has moved a stale lock aside, a late
  # heartbeat lands in the moved file, never in the taker's new lock. fsync makes it visible to
  # the other hosts of a network file system.
  data = (json.dumps(record, sort_keys=True) + "\n").encode()
  os.pwrite(fd, data, 0)
  os.ftruncate(fd, len(data))
  os.fsync(fd)


def _read(lock_path: Path) -> _Seen | None:
  """The lock file as it is now (None when there is none); an empty or half-written one is read
  again a few times, as its creator is writing it."""
  seen = None
  for _ in range(_READ_TRIES):
    try:
      with open(lock_path, "rb") as f:
        raw, stat = f.read(), os.fstat(f.fileno())
    except FileNotFoundError:
      return None
    seen = _Seen(raw, _parsed(raw), _inode(stat), stat.st_mtime)
    if seen.record is not None:
      break
    time.sleep(_READ_RETRY_S)
  return seen


def _parsed(raw: bytes) -> dict[str, Any] | None:
  """The lock's record, or None when it is not one (empty, cut short, or not ours)."""
  try:
    record = json.loads(raw)
  except ValueError:
    return None
  if not (isinstance(record, dict) and isinstance(record.get("pid"), int)
          and isinstance(record.get("host"), str)
          and isinstance(record.get("heartbeat"), (int, float))):
    return None
  return record


def _stale(seen: _Seen, lease_s: float) -> str | None:
  """Why the lock `seen` is stale, or None when its holder may still be running."""
  record = seen.record
  if record is None:  # its creator was killed before it wrote it, or is writing it now
    age = time.time() - seen.mtime
    return f"an unreadable lock file {age:.0f} s old" if age > lease_s else None
  if _same_host(record):
    pid = record["pid"]
    if not _alive(pid):
      return f"process {pid} is gone"
    start = _start_time(pid)
    if record.get("pid_start") is not None and start is not None and start != record["pid_start"]:
      return f"pid {pid} now belongs to a process started later"
    return None
  age = time.time() - record["heartbeat"]
  return f"its last heartbeat was {age:.0f} s ago" if age > lease_s else None


def _take_over(lock_path: Path, seen: _Seen, heartbeat_s: float) -> Lock | None:
  """The new lock in place of the stale one `seen`; None when another process was first."""
  aside = lock_path.with_name(f"{LOCK_FILE}.stale-{secrets.token_hex(8)}")
  try:
    os.rename(lock_path, aside)
  except FileNotFoundError:  # another taker moved it first
    return None
  moved = _read(aside)
  if moved is None or moved.inode != seen.inode or moved.raw != seen.raw:
    # Between the read and the rename another taker replaced the stale lock with its own, or
    # the holder's heartbeat came: put that lock back (link never replaces a file) and yield.
    with contextlib.suppress(OSError):
      os.link(aside, lock_path)
    with contextlib.suppress(FileNotFoundError):
      os.unlink(aside)
    return None
  try:
    return _create(lock_path, heartbeat_s)
  finally:
    # Removed only now, so that the new lock cannot reuse the stale one's inode number (which a
    # concurrent taker compares).
    os.unlink(aside)


def _in_use(path: Path, seen: _Seen, lease_s: float) -> str:
  """The one-line refusal: who holds the lock and since when."""
  record = seen.record
  if record is None:
    return (f"{path} is in use by a process whose lock {path / LOCK_FILE} is being written; "
            f"wait for it to finish, or stop it (a lock that stays unreadable is stale after "
            f"{lease_s:.0f} s)")
  started = str(record.get("started", "?"))
  today = time.strftime("%Y-%m-%d", time.gmtime())
  since = started[11:19] if started.startswith(today) else started[:19].replace("T", " ")
  where = f"process {record['pid']} on host {record['host']} (since {since} UTC"
  if not _same_host(record):
    age = time.time() - record["heartbeat"]
    where += f"; heartbeat {age:.0f} s ago, stale after {lease_s:.0f} s"
  return f"{path} is in use by {where}); wait for it to finish, or stop it"


def _agree(path: Path, error: WorkdirError | None) -> None:
  """Raises `error` (process 0's refusal, or None); in a multi-process run every process learns
  from process 0 whether it took the lock, so that when it was refused none waits for it at
  the work directory's first barrier."""
  if jax.process_count() > 1:
    taken = int(multihost_utils.broadcast_one_to_all(jnp.int32(error is None)))
    if not taken and error is None:
      raise WorkdirError(f"{path}: process 0 could not take the work directory's lock (its "
                         "error says why)")
  if error is not None:
    raise error


def _missing(path: Path) -> list[Path]:
  """`path` and those of its parents that do not exist, deepest first."""
  out = []
  while not path.exists() and path.parent != path:
    out.append(path)
    path = path.parent
  return out


def _same_host(record: dict[str, Any]) -> bool:
  """Whether the lock's pid can be checked here: same hostname and same pid namespace (a
  container sharing the hostname sees other pids)."""
  return (record["host"] == socket.gethostname()
          and record.get("pid_namespace", _pid_namespace()) == _pid_namespace())


def _alive(pid: int) -> bool:
  if pid <= 0:  # os.kill(0 or -n) would signal a process group
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's live process
    return True
  return _proc_stat(pid)[:1] != ["Z"]  # a zombie is a dead run its parent has not reaped


def _proc_stat(pid: int) -> list[str]:
  """The fields of /proc/<pid>/stat after the command name (state first); [] without /proc."""
  try:
    text = Path(f"/proc/{pid}/stat").read_text()
  except OSError:
    return []
  return text.rpartition(")")[2].split()  # the name, in parentheses, may hold spaces


def _start_time(pid: int) -> str | None:
  """When process `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
  fields = _proc_stat(pid)
  return fields[19] if len(fields) > 19 else None


def _pid_namespace() -> str | None:
  try:
    return os.readlink("/proc/self/ns/pid")
  except OSError:
    return None


def _inode(stat: os.stat_result) -> tuple[int, int]:
  return stat.st_dev, stat.st_ino
