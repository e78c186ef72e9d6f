"""Real text as documents: local Dolma-format shards ("jsonl") and the running Python's standard
library ("python_stdlib"), with what identifies them on disk.

A corpus is a sorted list of files and a way to read documents (str) from them, in a fixed
order. Its fingerprint lists every file's name, size and modification time (and for the
standard library, the Python that produced it), so a cache built from it can tell when it no
longer matches.

jsonl: every file under `data.path` (recursively) whose name ends in one of SHARD_SUFFIXES, one
JSON object per line with a string `text` field (other fields are ignored). A line that is not
JSON, not an object, or has no string `text` is skipped and counted; a file that is not UTF-8
is refused, with its name and line.

python_stdlib: the `.py` sources of the running Python's standard library (not site-packages,
not the `test` packages), one document per file, then the pydoc topics, one document each.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rare_tasks.core.config import ConfigError

SHARD_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst")
# Standard-library folders that are test suites, not the library.
STDLIB_SKIPPED = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test",
                            "__pycache__"})


def _zstd_open(path: Path) -> BinaryIO:
  import zstandard  # only for .zst shards
  return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)


def _opener(path: Path) -> Callable[[Path], BinaryIO]:
  name = path.name
  if name.endswith(".gz"):
    return lambda p: gzip.open(p, "rb")
  if name.endswith(".zst"):
    return _zstd_open
  return lambda p: open(p, "rb")


@dataclasses.dataclass
class Counts:
  """What reading a corpus met: documents kept, and lines or files skipped (by reason)."""

  documents: int = 0
  characters: int = 0
  skipped: dict[str, int] = dataclasses.field(default_factory=dict)

  def skip(self, reason: str) -> None:
    self.skipped[reason] = self.skipped.get(reason, 0) + 1


@dataclasses.dataclass(frozen=True)
class Corpus:
  """A corpus's files (absolute, sorted) and how to read them.

  kind: "jsonl" or "python_stdlib"; root: the folder the files are under; extra: what else
  identifies it (the Python version for the standard library).
  """

  kind: str
  root: Path
  files: tuple[Path, ...]
  extra: tuple[tuple[str, str], ...] = ()

  def fingerprint(self) -> dict[str, Any]:
    """Every file's name (relative to root), size and modification time, and `extra`."""
    files = []
    for f in self.files:
      st = f.stat()
      files.append([str(f.relative_to(self.root)), st.st_size, st.st_mtime_ns])
    return {"kind": self.kind, "root": str(self.root), "files": files, **dict(self.extra)}

  def documents(self, counts: Counts) -> Iterator[str]:
    """The documents in order; `counts` is updated as they are read."""
    if self.kind == "python_stdlib":
      yield from _stdlib_documents(self.files, counts)
    else:
      for f in self.files:
        yield from _jsonl_documents(f, self.root, counts)


def jsonl_corpus(path: str) -> Corpus:
  """The Dolma-format shards under `path` (a folder, or one shard file)."""
  allowed = "a folder of Dolma-format shards (" + ", ".join(f"*{s}" for s in SHARD_SUFFIXES) + ")"
  if not path:
    raise ConfigError(f"config.data.path = {path!r}: allowed: {allowed} (data.corpus 'jsonl' "
                      "reads local shards)")
  root = Path(path).expanduser().resolve()
  if root.is_file() and root.name.endswith(SHARD_SUFFIXES):
    return Corpus("jsonl", root.parent, (root,))
  if not root.is_dir():
    raise ConfigError(f"config.data.path = {path!r}: no such folder; allowed: {allowed}")
  files = tuple(sorted(f for f in root.rglob("*") if f.is_file()
                       and f.name.endswith(SHARD_SUFFIXES)))
  if not files:
    raise ConfigError(f"config.data.path = {path!r}: the folder holds no shards; allowed: "
                      f"{allowed}")
  return Corpus("jsonl", root, files)


def _jsonl_documents(path: Path, root: Path, counts: Counts) -> Iterator[str]:
  name = path.relative_to(root)
  with _opener(path)(path) as raw:
    for number, line in enumerate(io.BufferedReader(raw), start=1):  # type: ignore[arg-type]
      try:
        line_text = line.decode("utf-8")
      except UnicodeDecodeError as e:
        raise ConfigError(f"config.data.path: {name} line {number} is not UTF-8 (byte "
                          f"0x{line[e.start]:02x} at {e.start}); allowed: UTF-8 JSON lines, as "
                          "Dolma writes them") from None
      if not line_text.strip():
        continue
      try:
        record = json.loads(line_text)
      except json.JSONDecodeError:
        counts.skip("not JSON")
        continue
      text = record.get("text") if isinstance(record, dict) else None
      if not isinstance(text, str):
        counts.skip("no text field")
        continue
      try:
        text.encode("utf-8")
      except UnicodeEncodeError:  # a lone surrogate escaped in the JSON
        raise ConfigError(f"config.data.path: {name} line {number}: its text is not valid "
                          "Unicode (a lone surrogate); allowed: UTF-8 text") from None
      if text:
        counts.documents += 1
        counts.characters += len(text)
        yield text
      else:
        counts.skip("empty text")


def stdlib_corpus() -> Corpus:
  """The running Python's standard-library sources (module docstring), and its version."""
  root = Path(sysconfig.get_paths()["stdlib"]).resolve()
  files = tuple(sorted(f for f in root.rglob("*.py")
                       if not STDLIB_SKIPPED & set(f.relative_to(root).parts[:-1])))
  if not files:
    raise ConfigError(f"config.data.corpus = 'python_stdlib': no standard-library sources "
                      f"under {root}; allowed: a Python installation with its .py files")
  version = f"{sys.implementation.name} {sys.version.split()[0]} ({sys.executable})"
  return Corpus("python_stdlib", root, files, (("python", version),))


def _stdlib_documents(files: tuple[Path, ...], counts: Counts) -> Iterator[str]:
  for f in files:
    if f.parts[-2:] == ("pydoc_data", "topics.py"):  # read below as the topics themselves
      continue
    try:
      text = f.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
      counts.skip("unreadable source file")
      continue
    if text.strip():
      counts.documents += 1
      counts.characters += len(text)
      yield text
  try:
    from pydoc_data.topics import topics
  except ImportError:
    counts.skip("no pydoc topics")
    return
  for name in sorted(topics):
    counts.documents += 1
    counts.characters += len(topics[name])
    yield topics[name]


def corpus_of(kind: str, path: str) -> Corpus:
  """The corpus `data.corpus` names (a real-text one)."""
  if kind == "jsonl":
    return jsonl_corpus(path)
  if kind == "python_stdlib":
    return stdlib_corpus()
  raise ConfigError(f"config.data.corpus = {kind!r}: allowed: 'jsonl' or 'python_stdlib'")

