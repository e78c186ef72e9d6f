"""JAX's persistent compilation cache: compiled programs kept on disk and reused by later runs.

A grid compiles a few programs per group (init, the training chunk, evaluation); on a 2-core CPU
that is several seconds per invocation, paid again when a killed run resumes or the same grid
is swept with another seed. With the cache on, a program compiled once is read back instead.
The cache key covers the program, the JAX and XLA versions, the devices and the compile options,
so a hit runs the same executable and gives the same numbers.

A cache whose disk is full never stops a run: JAX (jax_raise_persistent_cache_errors off, its
default) warns for each entry it cannot write and goes on with the compiled program, leaving
the entry's file half written. enable() turns the first such warning into one line, removes the
half-written entries (a later run would fail to read them each time), and compiles without the
cache for the rest of the run.
"""

from __future__ import annotations

import os
import re
import time
import warnings
import zlib
from pathlib import Path

import jax
import zstandard
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from rare_tasks.core import disk
from rare_tasks.core.progress import log

# JAX's warning for an entry it could not write; group 1 is the program's name.
_WRITE_FAILED = re.compile(r"Error writing persistent compilation cache entry for '([^']+)'")


def default_dir() -> Path:
  """$XDG_CACHE_HOME/rare_tasks/compiled, else ~/.cache/rare_tasks/compiled."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return Path(base) / "rare_tasks" / "compiled"


def enable(cache_dir: str | os.PathLike = "") -> Path:
  """Turns the cache on in `cache_dir` (default: default_dir()), for every program compiled
  from now on, however short its compilation; returns the folder. Call before compiling."""
  path = Path(cache_dir).expanduser().resolve() if cache_dir else default_dir()
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_enable_compilation_cache", True)
  # JAX's defaults keep only programs that took a second to compile; most of a grid's take
  # less, and together they are the start-up.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  jax.config.update("jax_raise_persistent_cache_errors", False)
  if isinstance(warnings.showwarning, _FullCacheWatch):
    warnings.showwarning.watch(path)
  else:
    warnings.showwarning = _FullCacheWatch(warnings.showwarning, path)
  return path


def disable() -> None:
  """Turns the cache off: every program is compiled afresh and nothing is written."""
  jax.config.update("jax_enable_compilation_cache", False)


class _FullCacheWatch:
  """Stands in for warnings.showwarning (which it wraps): JAX's warnings that an entry of the
  cache in `folder` could not be written for lack of space become one log line, once, and the
  cache is turned off for the rest of the run; every other warning shows as before."""

  def __init__(self, show, folder: Path):
    self.show = show
    self.watch(folder)

  def watch(self, folder: Path) -> None:
    self.folder, self.since, self.reported = folder, time.time(), False

  def __call__(self, message, category, filename, lineno, file=None, line=None):
    text = str(message)
    written = _WRITE_FAILED.match(text)
    if written is None or not disk.no_space(OSError(text)):
      return self.show(message, category, filename, lineno, file, line)
    _remove_partial(self.folder, written.group(1), self.since)
    if not self.reported:
      self.reported = True
      disable()
      jax_cache.reset_cache()  # JAX decides once whether to use the cache: decide again
      free = disk.free_bytes(self.folder)
      log.warning("compilation cache %s: no room for more programs (%s free on %s); compiling "
                  "without the cache for the rest of this run", self.folder,
                  "unknown space" if free is None else disk.size_text(free),
                  disk.mount_of(self.folder))
    return None


def _remove_partial(folder: Path, program: str, since: float) -> None:
  """Removes the entries of `program` written since `since` that do not read back whole."""
  for f in folder.glob(f"{program}-*-cache"):
    try:
      if f.stat().st_mtime >= since - 1 and not _whole(f.read_bytes()):
        f.unlink()
    except OSError:
      continue


def _whole(data: bytes) -> bool:
  """Whether a cache entry decompresses (zstandard, else zlib: what JAX writes with)."""
  try:
    zstandard.ZstdDecompressor().decompress(data)
    return True
  except zstandard.ZstdError:
    pass
  try:
    zlib.decompress(data)
    return True
  except zlib.error:
    return False
