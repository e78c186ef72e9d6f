"""Real text as documents: local Dolma-format shards ("jsonl") and the running Python's standard
library ("python_stdlib"), with what identifies them on disk.

A corpus is a sorted list of files and a way to read documents (str) from them, in a fixed
order. Its fingerprint lists every file's name, size, modification time and content hash (and
for the standard library, the Python that produced it), so a cache built from it can tell when
it no longer matches. The content hash covers a file's bytes whole up to HASH_WHOLE, and
HASH_BLOCKS blocks spread from its first byte to its last beyond that (so that opening a
terabyte corpus reads little): an edit of a larger uncompressed shard that keeps its size and
modification time and falls between the blocks is not seen (in a compressed shard an edit
changes the bytes up to its end; gzip's trailer holds the CRC of the text). A file that cannot
be read hashes as UNREADABLE, so making it readable changes the fingerprint.

jsonl: every file under `data.path` (recursively) whose name ends in one of SHARD_SUFFIXES, one
JSON object per line with a string `text` field (other fields are ignored). A line that is not
UTF-8, not JSON, not an object, has no string `text` or text that is not valid Unicode (a lone
surrogate escaped in the JSON) is skipped; a file that cannot be opened, or read to its end (a
damaged compressed stream), is skipped from there. Each skip is counted by reason, and the
first NAMED_PER_REASON places (file and line) of each reason are kept with the counts.

python_stdlib: the `.py` sources of the running Python's standard library (not site-packages,
not the `test` packages), one document per file, then the pydoc topics, one document each; a
source that cannot be read as UTF-8 is skipped, counted and named.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import sys
import sysconfig
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from rare_tasks.core.config import ConfigError

SHARD_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst")
# Standard-library folders that are test suites, not the library.
STDLIB_SKIPPED = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test",
                            "__pycache__"})
# Skipped lines and files: how many places (file and line) are kept per reason.
NAMED_PER_REASON = 5
# A file's content hash reads it whole up to HASH_WHOLE bytes, else HASH_BLOCKS blocks of
# HASH_BLOCK bytes, the first at its start and the last at its end.
HASH_WHOLE = 64 << 10
HASH_BLOCKS = 16
HASH_BLOCK = 4 << 10
UNREADABLE = "unreadable"
# What reading a shard raises when the file cannot be opened or its compressed stream is damaged.
READ_ERRORS = (OSError, EOFError, zlib.error, zstandard.ZstdError)


def _zstd_open(path: Path) -> BinaryIO:
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
  """What reading a corpus met: documents kept, and lines or files skipped (by reason), with
  the first NAMED_PER_REASON places of each reason (`where`: "file line N", or the file)."""

  documents: int = 0
  characters: int = 0
  skipped: dict[str, int] = dataclasses.field(default_factory=dict)
  where: dict[str, list[str]] = dataclasses.field(default_factory=dict)

  def skip(self, reason: str, where: str = "") -> None:
    self.skipped[reason] = self.skipped.get(reason, 0) + 1
    if where:
      places = self.where.setdefault(reason, [])
      if len(places) < NAMED_PER_REASON:
        places.append(where)

  def describe(self) -> str:
    """The skips in one line (skipped_text)."""
    return skipped_text(self.skipped, self.where)


def skipped_text(skipped: dict[str, int], where: dict[str, list[str]]) -> str:
  """Skips in one line, each reason with its first places: "2 not JSON (a.jsonl line 3,
  b.jsonl line 1), 1 not UTF-8 (c.jsonl line 9)"; '' when nothing was skipped."""
  parts = []
  for reason, n in sorted(skipped.items()):
    places = list(where.get(reason, ()))
    if places and n > len(places):
      places.append("...")
    parts.append(f"{n:,} {reason}" + (f" ({', '.join(places)})" if places else ""))
  return ", ".join(parts)


def content_hash(path: Path, size: int) -> str:
  """A BLAKE2 hash of the file's bytes (all of them up to HASH_WHOLE, else HASH_BLOCKS blocks
  spread over it), or UNREADABLE."""
  h = hashlib.blake2b(digest_size=16)
  try:
    with open(path, "rb") as f:
      if size <= HASH_WHOLE:
        h.update(f.read())
      else:
        for i in range(HASH_BLOCKS):
          f.seek((size - HASH_BLOCK) * i // (HASH_BLOCKS - 1))
          h.update(f.read(HASH_BLOCK))
  except OSError:
    return UNREADABLE
  return h.hexdigest()


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
    """Every file's name (relative to root), size, modification time and content hash, and
    `extra`."""
    files = []
    for f in self.files:
      st = f.stat()
      files.append([str(f.relative_to(self.root)), st.st_size, st.st_mtime_ns,
                    content_hash(f, st.st_size)])
    return {"kind": self.kind, "root": str(self.root), "files": files, **dict(self.extra)}

  def documents(self, counts: Counts) -> Iterator[str]:
    """The documents in order; `counts` is updated as they are read."""
    if self.kind == "python_stdlib":
      yield from _stdlib_documents(self.root, self.files, counts)
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


def _error(e: Exception) -> str:
  return f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}"


def _lines(path: Path, name: Path, counts: Counts) -> Iterator[tuple[int, bytes]]:
  """The file's lines, numbered from 1; a file that cannot be opened, or read to its end, is
  counted as such (the lines read before are kept)."""
  number = 0
  try:
    with _opener(path)(path) as raw:
      for number, line in enumerate(io.BufferedReader(raw), start=1):  # type: ignore[arg-type]
        yield number, line
  except READ_ERRORS as e:
    at = f" after line {number}" if number else ""
    counts.skip("unreadable file", f"{name}{at} ({_error(e)})")


def _jsonl_documents(path: Path, root: Path, counts: Counts) -> Iterator[str]:
  name = path.relative_to(root)
  for number, line in _lines(path, name, counts):
    where = f"{name} line {number}"
    try:
      line_text = line.decode("utf-8")
    except UnicodeDecodeError:
      counts.skip("not UTF-8", where)
      continue
    if not line_text.strip():
      continue
    try:
      record = json.loads(line_text)
    except json.JSONDecodeError:
      counts.skip("not JSON", where)
      continue
    text = record.get("text") if isinstance(record, dict) else None
    if not isinstance(text, str):
      counts.skip("no text field", where)
      continue
    try:
      text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escaped in the JSON
      counts.skip("not valid Unicode", where)
      continue
    if text:
      counts.documents += 1
      counts.characters += len(text)
      yield text
    else:
      counts.skip("empty text", where)


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


def _stdlib_documents(root: Path, files: tuple[Path, ...], counts: Counts) -> Iterator[str]:
  for f in files:
    if f.parts[-2:] == ("pydoc_data", "topics.py"):  # read below as the topics themselves
      continue
    try:
      text = f.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
      counts.skip("unreadable source file", str(f.relative_to(root)))
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

