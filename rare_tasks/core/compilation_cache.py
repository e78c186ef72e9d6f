"""JAX's persistent compilation cache: compiled programs kept on disk and reused by later runs.

A grid compiles a few programs per group (init, the training chunk, evaluation); on a 2-core CPU
that is several seconds per invocation, paid again when a killed run resumes or the same grid
is swept with another seed. With the cache on, a program compiled once is read back instead.
The cache key covers the program, the JAX and XLA versions, the devices and the compile options,
so a hit runs the same executable and gives the same numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax


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
  return path


def disable() -> None:
  """Turns the cache off: every program is compiled afresh and nothing is written."""
  jax.config.update("jax_enable_compilation_cache", False)
