"""Documents from Dolma-format shards and from the Python standard library; bad shards."""

import gzip
import json
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


def test_text_that_is_not_utf8_is_refused_with_its_file_and_line(tmp_path):
  (tmp_path / "s.jsonl").write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
  with pytest.raises(ConfigError, match=r"data\.path: s\.jsonl line 2 is not UTF-8 \(byte 0xe9"):
    _docs(corpora.jsonl_corpus(str(tmp_path)))
  (tmp_path / "s.jsonl").write_text(json.dumps({"text": "a\ud800b"}) + "\n")
  with pytest.raises(ConfigError, match="line 1: its text is not valid Unicode"):
    _docs(corpora.jsonl_corpus(str(tmp_path)))


def test_the_fingerprint_names_every_file_with_its_size_and_time(tmp_path):
  (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
  corpus = corpora.jsonl_corpus(str(tmp_path))
  before = corpus.fingerprint()
  assert [f[:2] for f in before["files"]] == [["a.jsonl", 14]]
  (tmp_path / "a.jsonl").write_text('{"text": "xy"}\n')
  assert corpus.fingerprint() != before


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
