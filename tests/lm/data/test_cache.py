"""The dataset cache: the rows are the corpus's token streams cut into windows, an entry is
reused while its fingerprint holds and rebuilt when partial, corrupted or stale (a shard
rewritten with its size and time kept included); what reading skipped is recorded and logged
with its places; clearing it."""

import json
import logging
import os
import shutil

import numpy as np
import pytest

from rare_tasks.core import disk
from rare_tasks.core.config import ConfigError
from rare_tasks.core.progress import log
from rare_tasks.lm.data import cache, corpora, tokenizer
from tests import full_disk
from tests.lm.conftest import documents, write_shards
from tests.lm.data.test_corpora import make_unreadable

SEQ = 16


def _open(root, folder, tok=None, vocab=320):
  corpus = corpora.jsonl_corpus(str(folder))
  path = cache.entry_dir(root, corpus, "", vocab, SEQ)
  return (path, *cache.open_entry(path, corpus, tok, vocab, SEQ))


@pytest.fixture(scope="module")
def built(shards, text_cache):
  return _open(text_cache, shards)


def _rows(path, split):
  src = cache.data_sources(path)[split]
  return np.stack([src[i]["tokens"] for i in range(len(src))])


def test_the_rows_are_each_splits_documents_joined_by_eos_in_windows(built, text_docs):
  path, entry, tok = built
  assert entry["trained_tokenizer"] and tok.size <= 320 and entry["documents"] == len(text_docs)
  for split, keep in (("train", lambda j: j % 50 != 49), ("validation", lambda j: j % 50 == 49)):
    docs = [d for j, d in enumerate(text_docs) if keep(j)]
    stream = np.concatenate([[*ids, tok.eos_id] for ids in tok.encode(docs)])
    assert entry["tokens"][split] == len(stream)
    n = (len(stream) - 1) // SEQ
    want = np.stack([stream[i * SEQ:i * SEQ + SEQ + 1] for i in range(n)])
    got = _rows(path, split)
    assert entry["rows"][split] == n == len(got)
    assert sorted(map(tuple, got)) == sorted(map(tuple, want))  # stored in hashed-key order


def test_a_usable_entry_is_reused_not_rebuilt(built, shards, text_cache):
  path, entry, tok = built
  stamp = (path / cache.ENTRY_FILE).stat().st_mtime_ns
  again = _open(text_cache, shards)
  assert again[1] == entry and again[2].json == tok.json
  assert (path / cache.ENTRY_FILE).stat().st_mtime_ns == stamp


@pytest.fixture
def own(tmp_path, text_docs):
  folder = tmp_path / "shards"
  write_shards(folder, text_docs[:120])
  return tmp_path / "cache", folder


class _Messages(logging.Handler):
  def __init__(self):
    super().__init__()
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


@pytest.fixture
def logged():
  """The messages the package logs during the test."""
  handler = _Messages()
  log.addHandler(handler)
  yield handler.messages
  log.removeHandler(handler)


def _stamp(path):
  return (path / cache.ENTRY_FILE).stat().st_mtime_ns


def test_a_changed_shard_fails_the_fingerprint_and_is_rebuilt(own):
  root, folder = own
  path, entry, _ = _open(root, folder)
  with (folder / "a.jsonl").open("a") as f:
    f.write(json.dumps({"text": " ".join(documents(3, seed=9))}) + "\n")
  corpus = corpora.jsonl_corpus(str(folder))
  reason = cache.problem(path, cache.fingerprint(corpus, None, SEQ))
  assert reason == ("stale (its fingerprint no longer matches: 1 corpus file(s) added, removed "
                    "or changed: a.jsonl)")
  path2, entry2, _ = _open(root, folder)
  assert path2 == path and entry2["documents"] == entry["documents"] + 1
  assert cache.problem(path, cache.fingerprint(corpus, None, SEQ)) is None


def test_a_shard_rewritten_with_its_size_and_time_kept_is_rebuilt(own, logged):
  root, folder = own
  path, entry, _ = _open(root, folder)
  shard = folder / "a.jsonl"
  st, data = shard.stat(), shard.read_bytes()
  shard.write_bytes(data.replace(b"task", b"tusk", 1))
  os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
  assert (shard.stat().st_size, shard.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
  stamp = _stamp(path)
  _, rebuilt, _ = _open(root, folder)
  assert _stamp(path) != stamp and rebuilt["fingerprint"] != entry["fingerprint"]
  assert (f"text cache {path} is stale (its fingerprint no longer matches: 1 corpus file(s) "
          "added, removed or changed: a.jsonl): rebuilding it") in logged


def test_a_file_made_readable_after_the_build_makes_the_entry_stale(own):
  root, folder = own
  make_unreadable(folder / "a.jsonl")
  try:
    path, entry, _ = _open(root, folder)
  finally:
    (folder / "a.jsonl").chmod(0o644)
  assert entry["skipped"] == {"unreadable file": 1}
  assert entry["skipped_where"]["unreadable file"][0].startswith("a.jsonl (PermissionError")
  _, rebuilt, _ = _open(root, folder)
  assert rebuilt["skipped"] == {} and rebuilt["documents"] == 120 > entry["documents"]


def test_skipped_lines_are_counted_and_named_in_the_entry_and_logged(own, logged):
  root, folder = own
  (folder / "d.jsonl").write_bytes(b'not json\n{"id": 1}\n{"text": "caf\xe9"}\n')
  path, entry, _ = _open(root, folder)
  assert entry["documents"] == 120
  assert entry["skipped"] == {"not JSON": 1, "no text field": 1, "not UTF-8": 1}
  assert entry["skipped_where"] == {"not JSON": ["d.jsonl line 1"],
                                    "no text field": ["d.jsonl line 2"],
                                    "not UTF-8": ["d.jsonl line 3"]}
  assert json.loads((path / cache.ENTRY_FILE).read_text())["skipped_where"] == \
      entry["skipped_where"]
  line = (f"text cache {path}: reading {folder} skipped 1 no text field (d.jsonl line 2), "
          "1 not JSON (d.jsonl line 1), 1 not UTF-8 (d.jsonl line 3)")
  assert logged.count(line) == 1
  _open(root, folder)  # reused: said again, once
  assert logged.count(line) == 2


def _flip_last_but_one_byte(file):
  data = file.read_bytes()
  file.write_bytes(data[:-2] + (b" " if data[-2:-1] != b" " else b"\t") + data[-1:])


@pytest.mark.parametrize("damage,why", [
    (lambda p: (p / cache.ENTRY_FILE).unlink(), "partial"),
    (lambda p: _flip_last_but_one_byte(p / cache.TOKENIZER_FILE),
     "corrupted (its tokenizer.json is not the one"),
    (lambda p: next(p.rglob("*train.array_record*")).write_bytes(b"\0" * 64), "corrupted"),
    (lambda p: next(p.rglob("*validation.array_record*")).unlink(), "corrupted"),
])
def test_a_partial_or_corrupted_entry_is_never_used(own, damage, why):
  root, folder = own
  path, entry, _ = _open(root, folder)
  damage(path)
  corpus = corpora.jsonl_corpus(str(folder))
  assert cache.problem(path, cache.fingerprint(corpus, None, SEQ)).startswith(why)
  _, rebuilt, _ = _open(root, folder)
  assert rebuilt["rows"] == entry["rows"] and rebuilt["files"] == entry["files"]
  assert cache.problem(path, cache.fingerprint(corpus, None, SEQ)) is None


def test_a_given_tokenizer_is_part_of_the_fingerprint(own, tmp_path):
  root, folder = own
  _, _, trained = _open(root, folder)
  file = tmp_path / "tok.json"
  trained.save(file)
  tok = tokenizer.load(str(file))
  corpus = corpora.jsonl_corpus(str(folder))
  path = cache.entry_dir(root, corpus, str(file), 320, SEQ)
  entry, got = cache.open_entry(path, corpus, tok, 320, SEQ)
  assert not entry["trained_tokenizer"] and got.sha256 == tok.sha256
  other = tokenizer.train_bpe(documents(50, seed=3), 300)
  assert cache.problem(path, cache.fingerprint(corpus, other.sha256, SEQ)).startswith("stale")


def test_a_corpus_with_no_document_is_refused(tmp_path):
  (tmp_path / "s").mkdir()
  (tmp_path / "s" / "x.jsonl").write_text('{"id": 1}\nnot json\n')
  with pytest.raises(ConfigError, match=r"data\.path = .*no document to train on \(skipped "
                                        r"lines: 1 no text field \(x\.jsonl line 1\), 1 not "
                                        r"JSON \(x\.jsonl line 2\)\)"):
    _open(tmp_path / "cache", tmp_path / "s")
  assert not list((tmp_path / "cache" / "text").iterdir())  # nothing half-built is left


def test_clear_removes_every_entry_and_says_how_much(own):
  root, folder = own
  path, _, _ = _open(root, folder)
  size = cache.folder_bytes(root / "text")
  assert size > 0 and cache.clear(root) == size and not path.exists()
  shutil.rmtree(root)
  assert cache.clear(root) == 0


def test_the_default_cache_is_the_users_cache_folder(monkeypatch, tmp_path):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert cache.root_of("") == tmp_path / "rare_tasks"
  assert cache.root_of(str(tmp_path / "c")) == tmp_path / "c"


def test_a_corpus_too_small_for_a_validation_row_is_refused(tmp_path, text_docs):
  write_shards(tmp_path / "s", text_docs[:40])  # 40 documents: none is every 50th
  with pytest.raises(ConfigError, match=r"data\.path = .*its validation split holds 0 tokens"):
    _open(tmp_path / "cache", tmp_path / "s")


def test_a_build_on_a_full_disk_is_disk_full_naming_the_entry_and_leaves_nothing(own,
                                                                                 monkeypatch):
  root, folder = own
  full_disk.fill_path_writes(monkeypatch, lambda p: p.name == cache.ENTRY_FILE)
  with pytest.raises(disk.DiskFull, match=r"cannot write .*/text/jsonl-\w+: no space left"):
    _open(root, folder)
  assert [p.name for p in (root / "text").iterdir()] == []  # no partial entry, no build folder
  monkeypatch.undo()
  path, entry, _ = _open(root, folder)  # space freed: the same call builds it
  assert cache.problem(path, entry["fingerprint"]) is None
