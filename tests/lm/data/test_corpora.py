"""Documents from Dolma-format shards and from the Python standard library; bad lines and
files skipped, counted and named; the fingerprint's sizes, times and content hashes."""

import gzip
import json
import os
import sys

import pytest

from rare_tasks.core.config import ConfigError
from rare_tasks.lm.data import corpora


def _docs(corpus):
  counts = corpora.Counts()
  return list(corpus.documents(counts)), counts


def test_shards_of_every_compression_read_back_in_order(shards, text_docs):
  corpus = corpora.jsonl_corpus(str(shards))
  assert [f.name for f in corpus.files] == ["a.jsonl", "b.jsonl.gz", "c.json.zst"]
  docs, counts = _docs(corpus)
  assert docs == text_docs
  assert counts.documents == len(text_docs) and counts.skipped == {}
  assert counts.characters == sum(map(len, text_docs))


def test_lines_that_are_not_json_or_lack_text_are_skipped_and_counted(tmp_path):
  lines = ['{"text": "one"}', "not json", '{"id": 3}', '[1, 2]', '{"text": 7}',
           '{"text": ""}', "", '{"text": "two", "id": "x"}']
  (tmp_path / "s.jsonl").write_text("\n".join(lines) + "\n")
  docs, counts = _docs(corpora.jsonl_corpus(str(tmp_path)))
  assert docs == ["one", "two"]
  assert counts.skipped == {"not JSON": 1, "no text field": 3, "empty text": 1}
  assert counts.where == {"not JSON": ["s.jsonl line 2"],
                          "no text field": ["s.jsonl line 3", "s.jsonl line 4", "s.jsonl line 5"],
                          "empty text": ["s.jsonl line 6"]}
  assert counts.describe() == ("1 empty text (s.jsonl line 6), 3 no text field (s.jsonl line 3, "
                               "s.jsonl line 4, s.jsonl line 5), 1 not JSON (s.jsonl line 2)")


def test_only_the_first_places_of_a_reason_are_named(tmp_path):
  (tmp_path / "s.jsonl").write_text("bad\n" * 7 + '{"text": "ok"}\n')
  _, counts = _docs(corpora.jsonl_corpus(str(tmp_path)))
  assert counts.skipped == {"not JSON": 7}
  assert counts.where["not JSON"] == [f"s.jsonl line {i}" for i in range(1, 6)]
  assert counts.describe().endswith("s.jsonl line 5, ...)")
  assert corpora.skipped_text({}, {}) == ""


def test_a_nested_download_is_found_and_a_single_shard_accepted(tmp_path):
  (tmp_path / "books" / "x").mkdir(parents=True)
  (tmp_path / "books" / "x" / "b-0000.json.gz").write_bytes(
      gzip.compress(b'{"text": "nested"}\n'))
  (tmp_path / "README.md").write_text("not a shard")
  corpus = corpora.jsonl_corpus(str(tmp_path))
  assert [f.name for f in corpus.files] == ["b-0000.json.gz"]
  single = corpora.jsonl_corpus(str(corpus.files[0]))
  assert _docs(single)[0] == ["nested"]


@pytest.mark.parametrize("make,match", [
    (lambda p: p / "missing", "no such folder"),
    (lambda p: p, "holds no shards"),
])
def test_a_missing_or_empty_shard_folder_is_refused(tmp_path, make, match):
  with pytest.raises(ConfigError, match=rf"data\.path = .*{match}"):
    corpora.jsonl_corpus(str(make(tmp_path)))
  with pytest.raises(ConfigError, match=r"data\.path = ''"):
    corpora.jsonl_corpus("")


def test_lines_that_are_not_utf8_or_not_unicode_are_skipped_counted_and_named(tmp_path):
  (tmp_path / "a.jsonl").write_text('{"text": "fine"}\n')
  (tmp_path / "s.jsonl").write_bytes(b'{"text": "kept"}\n{"text": "caf\xe9"}\n'
                                     + json.dumps({"text": "a\ud800b"}).encode() + b"\n")
  docs, counts = _docs(corpora.jsonl_corpus(str(tmp_path)))
  assert docs == ["fine", "kept"]
  assert counts.skipped == {"not UTF-8": 1, "not valid Unicode": 1}
  assert counts.where == {"not UTF-8": ["s.jsonl line 2"], "not valid Unicode": ["s.jsonl line 3"]}


def test_a_damaged_compressed_shard_keeps_the_lines_before_and_is_named(tmp_path):
  lines = b"".join(json.dumps({"text": f"doc {i} " * 50}).encode() + b"\n" for i in range(400))
  whole = gzip.compress(lines)
  (tmp_path / "b.jsonl.gz").write_bytes(whole[:len(whole) // 2])
  docs, counts = _docs(corpora.jsonl_corpus(str(tmp_path)))
  assert 0 < len(docs) < 400 and docs == [f"doc {i} " * 50 for i in range(len(docs))]
  assert counts.skipped == {"unreadable file": 1}
  [where] = counts.where["unreadable file"]
  assert where.startswith(f"b.jsonl.gz after line {len(docs)} (EOFError: "), where


def make_unreadable(path):
  """Mode 000 on `path`; skips the test where that does not stop reading it (root)."""
  path.chmod(0)
  try:
    path.open("rb").close()
  except PermissionError:
    return
  path.chmod(0o644)
  pytest.skip("this user reads a file of mode 000 (root)")


def test_a_file_that_cannot_be_read_is_skipped_counted_and_named(tmp_path):
  (tmp_path / "a.jsonl").write_text('{"text": "kept"}\n')
  (tmp_path / "b.jsonl").write_text('{"text": "unread"}\n')
  make_unreadable(tmp_path / "b.jsonl")
  try:
    corpus = corpora.jsonl_corpus(str(tmp_path))
    docs, counts = _docs(corpus)
    assert corpus.fingerprint()["files"][1][3] == corpora.UNREADABLE
  finally:
    (tmp_path / "b.jsonl").chmod(0o644)
  assert docs == ["kept"] and counts.skipped == {"unreadable file": 1}
  assert counts.where == {"unreadable file": ["b.jsonl (PermissionError: Permission denied)"]}
  assert corpus.fingerprint()["files"][1][3] != corpora.UNREADABLE  # readable again: it changed


def _refuse(path):
  raise PermissionError(13, "Permission denied", str(path))


def test_a_file_that_cannot_be_opened_is_named_whoever_runs(tmp_path, monkeypatch):
  (tmp_path / "a.jsonl").write_text('{"text": "kept"}\n')
  (tmp_path / "b.jsonl").write_text('{"text": "unread"}\n')
  opener = corpora._opener
  monkeypatch.setattr(corpora, "_opener",
                      lambda path: _refuse if path.name == "b.jsonl" else opener(path))
  docs, counts = _docs(corpora.jsonl_corpus(str(tmp_path)))
  assert docs == ["kept"]
  assert counts.where == {"unreadable file": ["b.jsonl (PermissionError: Permission denied)"]}


def test_the_fingerprint_names_every_file_with_its_size_and_time(tmp_path):
  (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
  corpus = corpora.jsonl_corpus(str(tmp_path))
  before = corpus.fingerprint()
  assert [f[:2] for f in before["files"]] == [["a.jsonl", 14]]
  (tmp_path / "a.jsonl").write_text('{"text": "xy"}\n')
  assert corpus.fingerprint() != before


def test_a_rewrite_that_keeps_size_and_time_changes_the_content_hash(tmp_path):
  path = tmp_path / "a.jsonl"
  path.write_text('{"text": "abc"}\n')
  corpus = corpora.jsonl_corpus(str(tmp_path))
  before, st = corpus.fingerprint(), path.stat()
  path.write_text('{"text": "abd"}\n')
  os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
  after = corpus.fingerprint()
  assert [f[:3] for f in after["files"]] == [f[:3] for f in before["files"]]
  assert after != before


def test_a_large_files_hash_reads_blocks_from_its_first_byte_to_its_last(tmp_path):
  path = tmp_path / "big.jsonl"
  data = bytearray(b"x" * (corpora.HASH_WHOLE * 4))
  path.write_bytes(data)
  hashes = {corpora.content_hash(path, len(data))}
  for at in (0, len(data) - 1):
    changed = bytearray(data)
    changed[at] = ord("y")
    path.write_bytes(changed)
    hashes.add(corpora.content_hash(path, len(data)))
  assert len(hashes) == 3


def test_the_standard_library_corpus_is_this_pythons_sources_and_topics():
  corpus = corpora.stdlib_corpus()
  rel = {str(f.relative_to(corpus.root)) for f in corpus.files}
  assert {"json/__init__.py", "os.py", "asyncio/tasks.py"} <= rel
  assert not any(p.startswith(("test/", "site-packages/")) or "/tests/" in p for p in rel)
  assert sys.version.split()[0] in dict(corpus.extra)["python"]
  docs, counts = _docs(corpus)
  from pydoc_data.topics import topics
  assert counts.documents == len(docs) > len(topics)
  assert docs[-len(topics):] == [topics[k] for k in sorted(topics)]
  assert (corpus.root / "os.py").read_text(encoding="utf-8") in docs
