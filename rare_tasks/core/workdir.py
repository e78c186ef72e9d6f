"""The self-describing work directory: resolved config, append-only metrics, and their guards.

Every run has config.json (the resolved config), metrics.jsonl (append-only records) and
figures/; what else it writes (tables, summary.md, checkpoints/, ...) its study declares, and
that declared list is all that --overwrite deletes. Only process 0 writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from rare_tasks.core import disk
from rare_tasks.core.aliases import NO_ALIASES, Aliases

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
FIGURES_DIR = "figures"
# What every run writes, whatever its study.
BASE_FILES = (CONFIG_FILE, METRICS_FILE, FIGURES_DIR)
# The lock of the run using the directory (rare_tasks.core.workdir_lock). Neither it nor a stale
# lock moved aside while it is taken over (a name that begins with it) is a file of a run.
LOCK_FILE = ".rare_tasks.lock"


class WorkdirError(RuntimeError):
  """The work directory cannot be used as asked (another run's, not a run's, or not writable)."""


def is_writer() -> bool:
  return jax.process_index() == 0


def config_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as plain JSON values (tuples become lists)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def prepare(workdir: str | os.PathLike, config: ml_collections.ConfigDict, overwrite: bool, *,
            defaults: ml_collections.ConfigDict, run_files: Collection[str],
            not_identity: Collection[str] = (), aliases: Aliases = NO_ALIASES) -> Path:
  """Creates `workdir` with config.json, or checks that it holds a run of this same config.

  A work directory holding a run of a different config is refused unless `overwrite`, which
  deletes the files in `run_files` (and nothing else). A non-empty directory that holds no run
  is refused. `defaults` is the track's base config: a field an older run's config.json lacks is
  no difference when the new value is its default. Fields in `not_identity` (dotted paths) do
  not change what is trained: they may change on a resume, and config.json then records them.
  `aliases`: the track's renamed fields, values and studies; a stored config.json is read in
  today's names before it is compared. A run that predates a field of `aliases.absent` goes on
  as it was made: where `config` leaves that field at its default, it is set in `config` to what
  the run meant by its absence (a non-default value is a different config).
  Raises WorkdirError, never OSError, when the directory cannot be created or written, and
  disk.DiskFull when that is for lack of space.
  """
  path = Path(workdir)
  _continue_as_made(path, config, defaults, aliases)
  try:
    return _prepare(path, config_json(config), config_json(defaults), overwrite, run_files,
                    tuple(not_identity), aliases)
  except disk.DiskFull:
    raise
  except OSError as e:
    if disk.no_space(e):
      raise disk.DiskFull(e.filename or path, disk.free_bytes(path)) from e
    raise WorkdirError(f"{path}: cannot create or write the work directory "
                       f"({e.strerror or e}{': ' + str(e.filename) if e.filename else ''})"
                       ) from e


def _continue_as_made(path: Path, config: ml_collections.ConfigDict,
                      defaults: ml_collections.ConfigDict, aliases: Aliases) -> None:
  stored = read_json(path / CONFIG_FILE) if path.is_dir() else None
  if not isinstance(stored, dict):
    return
  for field, value in aliases.lacking(stored).items():
    *parents, leaf = field.split(".")
    node, default = config, defaults
    for p in parents:
      node, default = node[p], default[p]
    if node[leaf] == default[leaf]:
      node[leaf] = value


def _prepare(path: Path, wanted: dict[str, Any], defaults: dict[str, Any], overwrite: bool,
             run_files: Collection[str], not_identity: tuple[str, ...],
             aliases: Aliases) -> Path:
  existing = _check(path, wanted, defaults, overwrite, not_identity, aliases)
  # Every process checks the directory as it was before process 0 changes it: without the
  # barrier, another process could find process 0's figures/ before its config.json.
  barrier("rare_tasks: work directory checked")
  if is_writer():
    existing_file = path / CONFIG_FILE
    if existing is not None and _identity_diff(existing, wanted, defaults, not_identity):
      # The overwrite _check allowed; run_files is read only here (it may import every study).
      _delete(path, (*BASE_FILES, *run_files))
    path.mkdir(parents=True, exist_ok=True)
    (path / FIGURES_DIR).mkdir(exist_ok=True)
    # A resume that changes only not_identity fields records their new values.
    if existing is None or not existing_file.exists() or _diff(
        _picked(existing, not_identity), _picked(wanted, not_identity),
        _picked(defaults, not_identity)):
      _atomic_write(existing_file, json.dumps(wanted, indent=2, sort_keys=True) + "\n")
  barrier("rare_tasks: work directory written")
  return path


def _check(path: Path, wanted: dict[str, Any], defaults: dict[str, Any], overwrite: bool,
           not_identity: tuple[str, ...], aliases: Aliases) -> dict[str, Any] | None:
  """The config.json of the run in `path` in today's names (None for a new or empty
  directory); WorkdirError for a directory this run may not use. Reads only."""
  existing_file = path / CONFIG_FILE
  if path.exists() and not path.is_dir():
    raise WorkdirError(f"{path} is a file, not a work directory; choose a new or empty --workdir")
  if existing_file.exists():
    existing = aliases.translate(json.loads(existing_file.read_text()))
    diffs = _identity_diff(existing, wanted, defaults, not_identity)
    if diffs and not overwrite:
      raise WorkdirError(
          f"{path} holds a run of a different config ({'; '.join(diffs[:5])}); use another "
          "--workdir, or pass --overwrite to delete that run and start again")
    return existing
  if path.exists() and any(not p.name.startswith(LOCK_FILE) for p in path.iterdir()):
    raise WorkdirError(f"{path} is not empty and holds no rare_tasks run (no {CONFIG_FILE}); "
                       "choose a new or empty --workdir")
  return None


def barrier(name: str) -> None:
  """Waits until every process of a multi-process run has got here (nothing for one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def _delete(path: Path, names: Iterable[str]) -> None:
  for name in names:
    target = path / name
    if target.is_dir():
      shutil.rmtree(target)
    elif target.exists():
      target.unlink()


def load_config(workdir: str | os.PathLike, defaults: ml_collections.ConfigDict,
                aliases: Aliases = NO_ALIASES) -> ml_collections.ConfigDict:
  """The config of the run in `workdir`, from its config.json laid over `defaults` (a fresh base
  config of the track, filled in place), so that a run made before a field existed reads with
  that field's default; a config.json written under old names (the track's `aliases`) reads
  in today's."""
  stored = aliases.translate(json.loads((Path(workdir) / CONFIG_FILE).read_text()))
  config = defaults

  def lay(node: ml_collections.ConfigDict, values: dict[str, Any]) -> None:
    for k, v in values.items():
      if isinstance(v, dict) and isinstance(node.get(k), ml_collections.ConfigDict):
        lay(node[k], v)
      else:
        with node.ignore_type():
          node[k] = tuple(v) if isinstance(v, list) else v

  lay(config, stored)
  return config


def _picked(config: dict[str, Any], not_identity: tuple[str, ...]) -> dict[str, Any]:
  """Only the not_identity fields of a config, as {dotted path: value} (absent ones left out)."""
  out = {}
  for path in not_identity:
    node: Any = config
    for p in path.split("."):
      node = node.get(p, _ABSENT) if isinstance(node, dict) else _ABSENT
    if node is not _ABSENT:
      out[path] = node
  return out


def _identity(config: dict[str, Any], not_identity: tuple[str, ...]) -> dict[str, Any]:
  """The config without the not_identity fields (dotted paths)."""
  out = json.loads(json.dumps(config))
  for path in not_identity:
    *parents, leaf = path.split(".")
    node = out
    for p in parents:
      node = node.get(p, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict):
      node.pop(leaf, None)
  return out


_ABSENT = object()


def _identity_diff(old: dict[str, Any], new: dict[str, Any], defaults: dict[str, Any],
                   not_identity: tuple[str, ...]) -> list[str]:
  """The differences between two configs in what they train: the not_identity fields left out
  of both and of the defaults (a group whose not_identity fields an older run lacks is still
  its default)."""
  return _diff(_identity(old, not_identity), _identity(new, not_identity),
               _identity(defaults, not_identity))


def _diff(old: Any, new: Any, default: Any, prefix: str = "config") -> list[str]:
  """Differences between two configs. A field the older run's config lacks (it predates the
  field) is no difference when the new value is the field's default."""
  if isinstance(old, dict) and isinstance(new, dict):
    default = default if isinstance(default, dict) else {}
    out = []
    for k in sorted(set(old) | set(new)):
      out += _diff(old.get(k, _ABSENT), new.get(k, _ABSENT), default.get(k, _ABSENT),
                   f"{prefix}.{k}")
    return out
  if old is _ABSENT and new == default:
    return []
  show = lambda v: "(absent)" if v is _ABSENT else repr(v)  # noqa: E731
  return [] if old == new else [f"{prefix}: {show(old)} there, {show(new)} now"]


def _atomic_write(path: Path, text: str) -> None:
  _replace(path, path.with_suffix(path.suffix + ".tmp"), lambda tmp: tmp.write_text(text))


def _replace(path: Path, tmp: Path, write: Callable[[Path], object]) -> None:
  """Writes `path` whole: write(tmp), then `tmp` renamed onto `path`. A write that fails (a full
  disk: DiskFull naming `path`) removes `tmp` and leaves `path` as it was."""
  with disk.writing(path):
    try:
      write(tmp)
      os.replace(tmp, path)
    except BaseException:
      with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)
      raise


def write_text(path: Path, text: str) -> None:
  """Writes a whole file so that a reader never sees it half written."""
  if is_writer():
    _atomic_write(path, text)


def read_json(path: Path) -> Any:
  """A JSON file's contents, or None when it is missing or does not parse."""
  try:
    return json.loads(Path(path).read_text())
  except (OSError, ValueError):
    return None


def read_pickle(path: Path) -> Any:
  """A pickle file's contents (written by this package), or None when missing or damaged."""
  try:
    return pickle.loads(Path(path).read_bytes())
  except Exception:  # missing, cut short, or written by other versions of its types
    return None


def write_bytes(path: Path, data: bytes) -> None:
  """Writes a whole binary file so that a reader never sees it half written."""
  if is_writer():
    _replace(path, path.with_name(path.name + ".tmp"), lambda tmp: tmp.write_bytes(data))


def append_metrics(workdir: Path, records: Iterable[dict[str, Any]],
                   name: str = METRICS_FILE) -> None:
  """Appends records to metrics.jsonl (or another append-only JSON-lines file `name` of the work
  directory) and forces them to disk. A write that fails (a full disk: DiskFull naming the file)
  cuts the file back to its size before, so it never ends in a half-written record."""
  if not is_writer():
    return
  lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
  path = Path(workdir) / name
  if path.exists() and path.stat().st_size:
    with open(path, "rb") as f:
      f.seek(-1, os.SEEK_END)
      if f.read(1) != b"\n":  # a line cut short by a kill: never glue a record onto it
        lines = "\n" + lines
  append_bytes(path, lines.encode(), sync=True)


def append_bytes(path: Path, data: bytes, sync: bool = False) -> None:
  """Appends `data` to the file `path` (created if missing), forced to disk if `sync`. A write
  that fails (a full disk: DiskFull naming `path`) cuts the file back to its size before, so
  it never ends in half of `data`. Unlike the other writers, every process that calls it
  writes."""
  view = memoryview(data)
  with disk.writing(path):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
      size = os.fstat(fd).st_size
      try:
        while view:  # a write to a nearly full disk may take only part of the bytes
          view = view[os.write(fd, view):]
        if sync:
          os.fsync(fd)
      except BaseException:
        with contextlib.suppress(OSError):
          os.ftruncate(fd, size)
        raise
    finally:
      os.close(fd)


def read_metrics(workdir: Path, key: tuple[str, str] = ("cell", "step"),
                 name: str = METRICS_FILE) -> list[dict[str, Any]]:
  """Every record of metrics.jsonl (or of the JSON-lines file `name`), one per `key` (a model, a
  step; by default (cell, step)): a resumed run's rewrite wins. Sorted by key. A line cut short
  by a kill is skipped.
  """
  path = Path(workdir) / name
  if not path.exists():
    return []
  latest: dict[tuple, dict[str, Any]] = {}
  for line in path.read_text().splitlines():
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      continue
    latest[(record.get(key[0]), record.get(key[1]))] = record
  return sorted(latest.values(), key=lambda r: (r[key[0]], r[key[1]]))


def json_numbers(a: np.ndarray) -> Any:
  """An array as nested lists of floats, NaN as None (metrics.jsonl's numbers)."""
  if np.ndim(a) == 0:
    return None if np.isnan(a) else float(a)
  return [json_numbers(x) for x in a]
