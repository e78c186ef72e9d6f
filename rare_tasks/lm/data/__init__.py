"""Where a language model's text comes from: the interface every corpus implements, and the
corpus of a config by name.

  synthetic      the order-2 Markov source, generated on the device (markov.py)
  jsonl          local Dolma-format shards under data.path (corpora.py)
  python_stdlib  the running Python's standard library, on every machine (corpora.py)

Real text (jsonl, python_stdlib) is tokenised by data.tokenizer or a BPE trained on it
(tokenizer.py), written once into the dataset cache (cache.py, builder.py) and read by grain
(text.py).

A text source gives rows of seq_len + 1 tokens: training batch k is a pure function of
(the source's seed, k), so a resumed run needs only the step; the validation rows are fixed.
Both come back as device arrays placed as asked (a source may generate them on the device, as
the synthetic one does, or read them from disk and place them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import jax
import ml_collections

from rare_tasks.core import workdir
from rare_tasks.core.config import ConfigError, check
from rare_tasks.lm.data import cache, corpora, tokenizer
from rare_tasks.lm.data.markov import MAX_SYMBOLS, MarkovSource
from rare_tasks.lm.data.text import CachedText

CORPORA = ("synthetic", "jsonl", "python_stdlib")
TEXT_CORPORA = ("jsonl", "python_stdlib")
# A run on real text keeps its tokenizer here, in its work directory.
TOKENIZER_FILE = "tokenizer.json"


class TextSource(Protocol):
  """Rows of token ids for training and validation, and what is known of the best loss."""

  vocab_size: int
  seq_len: int
  eos_id: int

  def train_batches(self, first_step: int, num_steps: int, batch_size: int,
                    sharding: jax.sharding.Sharding | None = None) -> jax.Array:
    """Batches first_step .. first_step + num_steps - 1: (num_steps, batch_size, seq_len + 1)."""

  def validation(self, num_rows: int, sharding: jax.sharding.Sharding | None = None) -> jax.Array:
    """The held-out rows (num_rows, seq_len + 1), the same on every call."""

  def loss_floor(self) -> float | None:
    """The best achievable mean next-token loss on a row in nats (None when unknown)."""

  def describe(self) -> dict[str, Any]:
    """Numbers about the source for config.json's neighbours and the summary."""


def source_of(config: ml_collections.ConfigDict) -> TextSource:
  """The text source `config.data` names (config.data.corpus); for real text its cache entry
  is built first when it is missing or unusable."""
  d = config.data
  if d.corpus in TEXT_CORPORA:
    return _text_source(config)
  if d.corpus == "synthetic":
    return MarkovSource(vocab_size=d.vocab_size, seq_len=d.seq_len, seed=d.seed,
                        num_states=d.num_states, context_classes=d.context_classes,
                        successors=d.successors,
                        zipf_exponent=d.zipf_exponent, eos_probability=d.eos_probability,
                        # A larger vocabulary (a ladder preset's 50K) keeps its embedding rows;
                        # the source speaks the first MAX_SYMBOLS of them.
                        num_symbols=min(d.vocab_size - 1, MAX_SYMBOLS))
  raise ValueError(f"config.data.corpus = {d.corpus!r}: allowed: one of {list(CORPORA)}")


def _text_source(config: ml_collections.ConfigDict) -> CachedText:
  d = config.data
  corpus = corpora.corpus_of(d.corpus, d.path)
  tok = tokenizer.load(d.tokenizer) if d.tokenizer else None
  if tok is not None:
    tokenizer.check_fits(tok, d.vocab_size)
  else:
    check(d.vocab_size >= tokenizer.MIN_TRAINED_VOCAB, "data.vocab_size", d.vocab_size,
          f"at least {tokenizer.MIN_TRAINED_VOCAB} for a trained byte-level BPE (the 256 bytes, "
          "EOS and PAD), or a tokenizer file in data.tokenizer")
  path = cache.entry_dir(cache.root_of(d.cache_dir), corpus, d.tokenizer, d.vocab_size,
                         d.seq_len)
  entry, tok = cache.open_entry(path, corpus, tok, d.vocab_size, d.seq_len)
  tokenizer.check_fits(tok, d.vocab_size)
  where = d.path or corpus.root
  rows, batch = entry["rows"], config.train.batch_size
  check(rows["train"] >= batch, "data.path", str(where),
        f"a corpus of at least one batch: it gives {rows['train']:,} training rows of "
        f"seq_len + 1 = {d.seq_len + 1} tokens, train.batch_size is {batch}")
  check(rows["validation"] >= d.validation_rows, "data.validation_rows", d.validation_rows,
        f"at most the {rows['validation']:,} rows of the corpus's validation split (every "
        f"{cache.VALIDATION_EVERY}th document of {where})")
  return CachedText(corpus, path, entry, tok, d.seq_len, d.seed)


def keep_tokenizer(source: TextSource, wd: Path) -> None:
  """Writes a real-text source's tokenizer into the work directory; a run resumed there must
  use the same one (ConfigError naming data.tokenizer otherwise)."""
  if not isinstance(source, CachedText):
    return
  path = Path(wd) / TOKENIZER_FILE
  if path.exists():
    kept = path.read_text(encoding="utf-8")
    if kept != source.tokenizer.json:
      raise ConfigError(
          f"config.data.tokenizer = {source.tokenizer.origin!r}: the tokenizer differs from "
          f"the one this work directory's run started with ({path}); allowed: the corpus and "
          "tokenizer the run started with, or --overwrite")
    return
  workdir.write_text(path, source.tokenizer.json)


def check_unchanged(source: TextSource, recorded: dict[str, Any]) -> None:
  """ConfigError unless a real-text source's rows are the ones a run's checkpoints were
  trained on (`recorded`: the source's describe() when they were written; one recorded
  without the files' content hashes is compared without them)."""
  if not isinstance(source, CachedText) or "fingerprint" not in recorded:
    return
  now = source.fingerprint()
  same = recorded["fingerprint"] in (now, source.fingerprint(content=False))
  check(same, "data.path", str(source.corpus.root),
        f"the corpus this run's checkpoints were trained on (fingerprint "
        f"{recorded['fingerprint']}, now {now}: a shard, the tokenizer or the row length "
        "changed); restore it, or start again with --overwrite")
