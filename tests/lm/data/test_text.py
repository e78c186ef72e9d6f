"""Real text as a text source: batch k a pure function of (seed, k) across calls, restarts and
processes, epochs that are permutations, placement on a mesh, fixed validation rows, and the
checks of source_of on a corpus: skipped lines reported with their places, a resumed run on a
shard rewritten in place refused, a tokenizer file that does not parse refused."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from rare_tasks.core.config import ConfigError
from rare_tasks.lm import config as lm_config
from rare_tasks.lm import data
from rare_tasks.lm.data.text import CachedText
from tests.lm.conftest import write_shards

ROOT = Path(__file__).resolve().parents[3]


def text_config(shards, cache_dir, **data_fields):
  c = lm_config.base_config()
  fields = dict(corpus="jsonl", path=str(shards), cache_dir=str(cache_dir), vocab_size=320,
                seq_len=16, validation_rows=16)
  c.data.update({**fields, **data_fields})
  c.train.batch_size = 8
  return c


@pytest.fixture(scope="module")
def source(shards, text_cache):
  return data.source_of(text_config(shards, text_cache))


def test_the_source_speaks_the_tokenizers_padded_vocabulary(source):
  assert isinstance(source, CachedText)
  assert source.vocab_size == 384 and source.eos_id == 0 and source.loss_floor() is None
  rows = np.asarray(source.train_batches(0, 2, 8))
  assert rows.shape == (2, 8, 17) and rows.dtype == np.int32
  assert rows.min() >= 0 and rows.max() < source.tokenizer.size
  d = source.describe()
  assert d["train_rows"] == source.rows["train"] and d["vocab_size"] == 384
  assert d["fingerprint"] == source.fingerprint() and len(d["fingerprint"]) == 16


def test_batch_k_depends_only_on_the_seed_and_k(source, shards, text_cache):
  whole = np.asarray(source.train_batches(0, 6, 8))
  np.testing.assert_array_equal(np.asarray(source.train_batches(3, 2, 8)), whole[3:5])
  restarted = data.source_of(text_config(shards, text_cache))  # a resumed run's source
  np.testing.assert_array_equal(np.asarray(restarted.train_batches(5, 1, 8)), whole[5:6])
  other = data.source_of(text_config(shards, text_cache, seed=1))
  assert not np.array_equal(np.asarray(other.train_batches(0, 6, 8)), whole)


def test_every_epoch_is_a_new_permutation_of_the_train_rows(source):
  n = source.rows["train"]
  idx = source.train_indices(0, -(-2 * n // 4), 4).ravel()
  first, second = idx[:n], idx[n:2 * n]
  assert sorted(first) == list(range(n)) and sorted(second) == list(range(n))
  assert not np.array_equal(first, second)


def test_another_process_reads_the_same_batches(source, shards, text_cache):
  script = (
      "import sys, numpy as np\n"
      "from tests.lm.data.test_text import text_config\n"
      "from rare_tasks.lm import data\n"
      f"s = data.source_of(text_config({str(shards)!r}, {str(text_cache)!r}))\n"
      "sys.stdout.write(np.asarray(s.train_batches(7, 2, 8)).tobytes().hex())\n")
  out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                       check=True).stdout
  got = np.frombuffer(bytes.fromhex(out), np.int32).reshape(2, 8, 17)
  np.testing.assert_array_equal(got, np.asarray(source.train_batches(7, 2, 8)))


def test_rows_are_placed_on_the_mesh_as_asked(source):
  mesh = jax.sharding.Mesh(np.array(jax.devices()).reshape(2, 4), ("member", "data"))
  sharding = NamedSharding(mesh, PartitionSpec(None, "data"))
  placed = source.train_batches(2, 3, 8, sharding)
  assert placed.sharding == sharding
  np.testing.assert_array_equal(np.asarray(placed), np.asarray(source.train_batches(2, 3, 8)))
  val = source.validation(16, NamedSharding(mesh, PartitionSpec("data")))
  np.testing.assert_array_equal(np.asarray(val), np.asarray(source.validation(16)))


def test_the_validation_rows_are_fixed(source):
  np.testing.assert_array_equal(np.asarray(source.validation(12)),
                                np.asarray(source.validation(16))[:12])
  with pytest.raises(ValueError, match="validation split holds"):
    source.validation(source.rows["validation"] + 1)


def test_a_corpus_too_small_for_one_batch_is_refused(tmp_path, text_docs):
  write_shards(tmp_path / "s", text_docs[:50])
  c = text_config(tmp_path / "s", tmp_path / "cache")
  c.train.batch_size = 100_000
  with pytest.raises(ConfigError, match=r"data\.path = .*fewer than|at least one batch"):
    data.source_of(c)
  c = text_config(tmp_path / "s", tmp_path / "cache", validation_rows=100_000)
  with pytest.raises(ConfigError, match=r"data\.validation_rows = 100000: allowed: at most"):
    data.source_of(c)


def test_a_given_tokenizer_too_large_for_the_vocabulary_is_refused(source, shards, tmp_path):
  file = tmp_path / "tokenizer.json"
  source.tokenizer.save(file)
  c = text_config(shards, tmp_path / "cache", tokenizer=str(file), vocab_size=300)
  with pytest.raises(ConfigError, match=r"data\.vocab_size = 300: allowed: at least the "
                                        r"tokenizer's 320 tokens"):
    data.source_of(c)
  c = text_config(shards, tmp_path / "cache", vocab_size=200)
  with pytest.raises(ConfigError, match=r"data\.vocab_size = 200: allowed: at least 258"):
    data.source_of(c)


def test_the_run_keeps_its_tokenizer_and_refuses_another_or_a_changed_corpus(source, tmp_path):
  data.keep_tokenizer(source, tmp_path)
  assert (tmp_path / data.TOKENIZER_FILE).read_text() == source.tokenizer.json
  data.keep_tokenizer(source, tmp_path)  # the same one again: fine
  (tmp_path / data.TOKENIZER_FILE).write_text("{}")
  with pytest.raises(ConfigError, match=r"data\.tokenizer = .*differs from the one"):
    data.keep_tokenizer(source, tmp_path)
  data.check_unchanged(source, source.describe())
  with pytest.raises(ConfigError, match=r"data\.path = .*fingerprint 0123"):
    data.check_unchanged(source, {"fingerprint": "0123"})


@pytest.fixture
def bad_lines(tmp_path, text_docs):
  """A corpus of 120 documents and a shard of three bad lines, and its config."""
  write_shards(tmp_path / "s", text_docs[:120])
  (tmp_path / "s" / "d.jsonl").write_bytes(b'{"text": "caf\xe9"}\nnot json\n')
  return tmp_path / "s", text_config(tmp_path / "s", tmp_path / "cache")


def test_the_source_reports_skipped_lines_with_their_places(bad_lines):
  d = data.source_of(bad_lines[1]).describe()
  assert d["documents"] == 120
  assert d["skipped_lines"] == {"not UTF-8": 1, "not JSON": 1}
  assert d["skipped_where"] == {"not UTF-8": ["d.jsonl line 1"], "not JSON": ["d.jsonl line 2"]}


def test_a_resumed_run_on_a_shard_rewritten_in_place_is_refused_in_one_line(bad_lines):
  folder, config = bad_lines
  recorded = data.source_of(config).describe()
  shard = folder / "a.jsonl"
  st = shard.stat()
  shard.write_bytes(shard.read_bytes().replace(b"task", b"tusk", 1))
  os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
  now = data.source_of(config)  # its cache entry is rebuilt
  assert now.describe()["fingerprint"] != recorded["fingerprint"]
  with pytest.raises(ConfigError) as e:
    data.check_unchanged(now, recorded)
  message = str(e.value)
  assert message.startswith(f"config.data.path = {str(folder)!r}: allowed: the corpus this "
                            f"run's checkpoints were trained on (fingerprint "
                            f"{recorded['fingerprint']}, now {now.fingerprint()}")
  assert "\n" not in message


def test_a_fingerprint_recorded_without_content_hashes_still_matches(source):
  data.check_unchanged(source, {"fingerprint": source.fingerprint(content=False)})
  assert source.fingerprint(content=False) != source.fingerprint()


def test_a_tokenizer_file_that_does_not_parse_is_refused_naming_data_tokenizer(shards, tmp_path):
  (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "trunc')
  c = text_config(shards, tmp_path / "cache", tokenizer=str(tmp_path / "tokenizer.json"))
  with pytest.raises(ConfigError, match=r"^config\.data\.tokenizer = '.*tokenizer\.json': not a "
                                        r"Hugging Face tokenizer\.json \(EOF while parsing"):
    data.source_of(c)
  assert not (tmp_path / "cache").exists()  # refused before any cache entry is built
