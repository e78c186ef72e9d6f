"""The dataset cache of real text: a corpus tokenised, joined with EOS and cut into rows of
seq_len + 1 tokens, written once as array_record by a TFDS builder (no TensorFlow).

An entry is one folder under `<cache_dir>/text/`, named by what the run asks for (the corpus's
kind and folder, the tokenizer (a file's path, or a trained BPE's size), seq_len, FORMAT):

  tokenizer.json   the tokenizer the rows were made with
  tfds/            the TFDS dataset: splits "train" and "validation", feature "tokens"
  entry.json       written last: the fingerprint it was built from, rows, tokens, what reading
                   the corpus skipped (`skipped`: lines or files per reason; `skipped_where`:
                   the first places of each, file and line), and the size of every file

An entry is used only when entry.json exists, its fingerprint equals the corpus's now (every
file's name, size, modification time and content hash, the tokenizer's SHA-256, seq_len), its
tokenizer.json has the recorded SHA-256, every file has its recorded size and the first and
last row of each split read back; anything else (a build killed half-way, a damaged file, a
changed shard, named) is logged and the entry rebuilt. The fingerprint is taken before the
corpus is read, so a shard changed during a build makes the entry stale. A build writes into a
temporary folder renamed into place at the end, so readers never see a partial entry. What
reading the corpus skipped is logged, with its first places, each time an entry is opened.

Document j goes to the validation split when j % VALIDATION_EVERY == VALIDATION_EVERY - 1
(2% of the documents, spread over the corpus), the rest to train. Each split's documents,
each followed by EOS, form one token stream cut into rows of seq_len + 1 with a stride of
seq_len, so consecutive rows share one token and every token after the first is a target once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from rare_tasks.core import disk
from rare_tasks.core.config import ConfigError
from rare_tasks.core.progress import log
from rare_tasks.lm.data import tokenizer as tokenizers
from rare_tasks.lm.data.builder import BUILDER_NAME, text_rows_builder
from rare_tasks.lm.data.corpora import Corpus, Counts, skipped_text

FORMAT = 1
VALIDATION_EVERY = 50
SPLITS = ("train", "validation")
ENTRY_FILE = "entry.json"
TOKENIZER_FILE = "tokenizer.json"
TFDS_DIR = "tfds"
ENCODE_BATCH = 256
# A stale entry's log line names this many of the corpus files that changed.
NAMED_CHANGES = 3


def default_dir() -> Path:
  """$XDG_CACHE_HOME/rare_tasks, else ~/.cache/rare_tasks."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return Path(base) / "rare_tasks"


def root_of(cache_dir: str) -> Path:
  """The cache folder `data.cache_dir` names ('' for the default)."""
  return Path(cache_dir).expanduser().resolve() if cache_dir else default_dir()


def entry_dir(root: Path, corpus: Corpus, tokenizer_path: str, vocab_size: int,
              seq_len: int) -> Path:
  """The entry folder of a corpus, tokenizer and row length."""
  who = tokenizer_path and str(Path(tokenizer_path).expanduser().resolve())
  ident = dict(kind=corpus.kind, root=str(corpus.root), tokenizer=who or f"bpe:{vocab_size}",
               seq_len=seq_len, format=FORMAT)
  key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
  return root / "text" / f"{corpus.kind}-{key}"


def folder_bytes(path: Path) -> int:
  """Bytes of the files under `path`."""
  return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def clear(root: Path) -> int:
  """Removes every text entry (and any half-built one) under `root`; returns the bytes freed."""
  text = root / "text"
  freed = folder_bytes(text)
  shutil.rmtree(text, ignore_errors=True)
  return freed


def fingerprint(corpus: Corpus, tokenizer_sha256: str | None, seq_len: int) -> dict[str, Any]:
  """What an entry is built from: the corpus's files, the tokenizer (None: a BPE trained
  with the entry) and the row length."""
  return dict(corpus=corpus.fingerprint(), tokenizer_sha256=tokenizer_sha256, seq_len=seq_len,
              format=FORMAT)


def _files(path: Path) -> dict[str, int]:
  return {str(f.relative_to(path)): f.stat().st_size for f in sorted(path.rglob("*"))
          if f.is_file() and f.name != ENTRY_FILE}


def _builder_dir(path: Path) -> Path:
  versions = sorted((path / TFDS_DIR / BUILDER_NAME).glob("*/dataset_info.json"))
  if not versions:
    raise FileNotFoundError(path / TFDS_DIR)
  return versions[-1].parent


def data_sources(path: Path) -> dict[str, Any]:
  """The entry's splits as TFDS array_record data sources (random access, no TensorFlow)."""
  builder = tfds.builder_from_directory(str(_builder_dir(path)))
  return {split: builder.as_data_source(split) for split in SPLITS}


def problem(path: Path, wanted: dict[str, Any]) -> str | None:
  """Why the entry at `path` cannot be used for `wanted` (None: it can)."""
  if not path.exists():
    return "not built yet"
  try:
    entry = json.loads((path / ENTRY_FILE).read_text())
  except (OSError, ValueError):
    return "partial (no entry.json: its build did not finish)"
  built = {k: entry.get("fingerprint", {}).get(k) for k in wanted}
  if built != wanted:
    return f"stale (its fingerprint no longer matches: {_changes(built, wanted)})"
  if _files(path) != entry.get("files"):
    return "corrupted (its files are not those it was built with)"
  try:
    kept = hashlib.sha256((path / TOKENIZER_FILE).read_bytes()).hexdigest()
  except OSError:
    kept = None
  if kept != entry.get("tokenizer_sha256"):
    return f"corrupted (its {TOKENIZER_FILE} is not the one it was built with)"
  try:
    sources = data_sources(path)
    for split, src in sources.items():
      n = entry["rows"][split]
      if len(src) != n or any(len(src[i]["tokens"]) != wanted["seq_len"] + 1 for i in (0, n - 1)):
        return f"corrupted (split {split} does not read back)"
  except Exception as e:  # any failure to read back means the entry is unusable
    return f"corrupted ({type(e).__name__} reading it back)"
  return None


def _changes(built: dict[str, Any], wanted: dict[str, Any]) -> str:
  """What differs between an entry's fingerprint and the corpus's now, the first files named."""
  old = {f[0]: tuple(f[1:]) for f in (built.get("corpus") or {}).get("files", [])}
  new = {f[0]: tuple(f[1:]) for f in wanted["corpus"]["files"]}
  changed = sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))
  if not changed:
    return "the tokenizer, the row length or the Python changed"
  named = ", ".join(changed[:NAMED_CHANGES]) + (", ..." if len(changed) > NAMED_CHANGES else "")
  return f"{len(changed)} corpus file(s) added, removed or changed: {named}"


def _streams(corpus: Corpus, tok: tokenizers.TextTokenizer, folder: Path,
             counts: Counts) -> dict[str, int]:
  """Tokenises the documents into one raw int32 file per split; returns tokens per split."""
  folder.mkdir(parents=True, exist_ok=True)
  outs = {s: open(folder / f"{s}.tokens", "wb") for s in SPLITS}
  totals = dict.fromkeys(SPLITS, 0)
  pending: dict[str, list[str]] = {s: [] for s in SPLITS}

  def flush(split: str) -> None:
    for ids in tok.encode(pending[split]):
      outs[split].write(np.asarray([*ids, tok.eos_id], np.int32).tobytes())
      totals[split] += len(ids) + 1
    pending[split].clear()

  try:
    for j, text in enumerate(corpus.documents(counts)):
      split = SPLITS[1] if j % VALIDATION_EVERY == VALIDATION_EVERY - 1 else SPLITS[0]
      pending[split].append(text)
      if len(pending[split]) >= ENCODE_BATCH:
        flush(split)
    for split in SPLITS:
      flush(split)
  finally:
    for f in outs.values():
      f.close()
  return totals


def _train_texts(corpus: Corpus):
  """The train split's documents, for a tokenizer to learn from."""
  for j, text in enumerate(corpus.documents(Counts())):
    if j % VALIDATION_EVERY != VALIDATION_EVERY - 1:
      yield text


def _write_tfds(folder: Path, streams: dict[str, Path], seq_len: int) -> dict[str, int]:
  """The rows of each split's token stream as a TFDS array_record dataset; rows per split."""
  tfds.disable_progress_bar()
  builder = text_rows_builder(streams, seq_len, str(folder / TFDS_DIR))
  builder.download_and_prepare()
  return {s: builder.info.splits[s].num_examples for s in SPLITS}


def _check_rows(corpus: Corpus, counts: Counts, tokens: dict[str, int], seq_len: int) -> None:
  """ConfigError naming data.path unless both splits hold at least one row."""
  where = str(corpus.root)
  if counts.documents == 0:
    skipped = counts.describe() or "none"
    raise ConfigError(f"config.data.path = {where!r}: no document to train on (skipped "
                      f"lines: {skipped}); allowed: JSON lines with a string `text` field")
  for split in SPLITS:
    if tokens[split] <= seq_len:
      raise ConfigError(
          f"config.data.path = {where!r}: its {split} split holds {tokens[split]} tokens, not "
          f"one row of seq_len + 1 = {seq_len + 1} (of {counts.documents} documents, every "
          f"{VALIDATION_EVERY}th is validation); allowed: a larger corpus")


def build(path: Path, corpus: Corpus, tok: tokenizers.TextTokenizer | None, vocab_size: int,
          seq_len: int) -> dict[str, Any]:
  """Builds the entry at `path` (replacing whatever is there); returns its entry.json.

  tok None: a byte-level BPE of vocab_size is trained on the train split first.
  """
  start = time.perf_counter()
  tmp = path.parent / f".{path.name}.building-{uuid.uuid4().hex[:8]}"
  trained = tok is None
  built_from = fingerprint(corpus, None if tok is None else tok.sha256, seq_len)
  try:
    if trained:
      tok = tokenizers.train_bpe(_train_texts(corpus), vocab_size)
    tok.save(tmp / TOKENIZER_FILE)
    counts = Counts()
    tokens = _streams(corpus, tok, tmp / "streams", counts)
    _check_rows(corpus, counts, tokens, seq_len)
    streams = {s: tmp / "streams" / f"{s}.tokens" for s in SPLITS}
    rows = _write_tfds(tmp, streams, seq_len)
    shutil.rmtree(tmp / "streams")
    entry = dict(fingerprint=built_from, tokenizer_sha256=tok.sha256, trained_tokenizer=trained,
                 rows=rows, tokens=tokens, documents=counts.documents,
                 characters=counts.characters, skipped=counts.skipped,
                 skipped_where=counts.where, build_s=time.perf_counter() - start,
                 files=_files(tmp))
    (tmp / ENTRY_FILE).write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")
    if problem(path, entry["fingerprint"]) is None:  # another process finished first: keep it
      return json.loads((path / ENTRY_FILE).read_text())
    shutil.rmtree(path, ignore_errors=True)
    try:
      tmp.rename(path)
    except OSError:  # another process put an entry in place meanwhile: keep it
      return json.loads((path / ENTRY_FILE).read_text())
    return entry
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def open_entry(path: Path, corpus: Corpus, tok: tokenizers.TextTokenizer | None,
               vocab_size: int, seq_len: int) -> tuple[dict[str, Any], tokenizers.TextTokenizer]:
  """The entry at `path`, built or rebuilt unless usable as it is; and its tokenizer."""
  wanted = fingerprint(corpus, None if tok is None else tok.sha256, seq_len)
  reason = problem(path, wanted)
  if reason is None:
    entry = json.loads((path / ENTRY_FILE).read_text())
    how = "reused"
  else:
    if reason != "not built yet":
      log.info("text cache %s is %s: rebuilding it", path, reason)
    with disk.writing(path):  # a build that fails leaves nothing behind (see build)
      entry = build(path, corpus, tok, vocab_size, seq_len)
    how = f"built in {entry['build_s']:.1f} s"
  tok = tokenizers.from_json((path / TOKENIZER_FILE).read_text(encoding="utf-8"),
                             tok.origin if tok is not None else "trained byte-level BPE")
  log.info("text cache %s: %.1f MB, %s train + %s validation rows (%s)", path,
           folder_bytes(path) / 1e6, f"{entry['rows']['train']:,}",
           f"{entry['rows']['validation']:,}", how)
  if entry["skipped"]:
    log.info("text cache %s: reading %s skipped %s", path, corpus.root,
             skipped_text(entry["skipped"], entry.get("skipped_where", {})))
  return entry, tok
