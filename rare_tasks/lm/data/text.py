"""Real text as a text source: the rows of a corpus's dataset cache, shuffled by grain.

Training batch k of batch size B is rows order[k * B : (k + 1) * B] of the train split, where
`order` is grain's seeded shuffle of the split, repeated with a new permutation every epoch
(`grain.MapDataset.range(rows).seed(seed).shuffle().repeat(None)`): a pure function of (data.seed,
k, B), so a resumed run needs only its step, and every process of a multi-host run reads the
same batch. The validation rows are the first rows of the validation split, in the order the
cache stores them. Rows are read on the host with one batched array_record read per chunk and
placed on the devices as asked; a chunk is read while the previous one trains (the loop
dispatches asynchronously).

A record is a serialised tf.train.Example whose one bytes feature ends it, so a row is the
record's last 4 (seq_len + 1) bytes: rows are cut from the raw records directly (3x faster than
TFDS's decoder per row), after checking at open that this gives what TFDS decodes for the
first and last record of each split; where it does not, TFDS's decoder is used.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np

from rare_tasks.lm.data import cache
from rare_tasks.lm.data.corpora import Corpus
from rare_tasks.lm.data.tokenizer import TextTokenizer


def place(host: np.ndarray, sharding: jax.sharding.Sharding | None) -> jax.Array:
  """A host array on the devices: laid out by `sharding` (each process gives the shards it
  holds), or on the default device."""
  if sharding is None:
    return jnp.asarray(host)
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


class CachedText:
  """The text source of a real corpus (module docstring), from its cache entry at `path`.

  vocab_size is the model's vocabulary: the tokenizer's size padded to a multiple of 128.
  """

  def __init__(self, corpus: Corpus, path: Path, entry: dict[str, Any], tok: TextTokenizer,
               seq_len: int, seed: int):
    self.corpus, self.path, self.entry, self.tokenizer = corpus, path, entry, tok
    self.seq_len, self.seed = seq_len, seed
    self.vocab_size = tok.model_vocab_size
    self.eos_id = tok.eos_id
    self.rows = dict(entry["rows"])
    self._sources = cache.data_sources(path)
    self._orders: dict[int, grain.MapDataset] = {}
    self._record_bytes = {split: self._record_size(split) for split in self._sources}

  def _record_size(self, split: str) -> int | None:
    """The length of the split's records if their last bytes are the row TFDS decodes."""
    src, n = self._sources[split], self.rows[split]
    raw = src.data_source.__getitems__([0, n - 1])
    tail = 4 * (self.seq_len + 1)
    if len({len(r) for r in raw}) != 1:
      return None
    for i, r in zip((0, n - 1), raw):
      if not np.array_equal(np.frombuffer(r[-tail:], np.int32), src[i]["tokens"]):
        return None
    return len(raw[0])

  def _order(self, batch_size: int) -> grain.MapDataset:
    if batch_size not in self._orders:
      rows = grain.MapDataset.range(self.rows["train"]).seed(self.seed).shuffle().repeat(None)
      self._orders[batch_size] = rows.batch(batch_size)
    return self._orders[batch_size]

  def read(self, split: str, indices: np.ndarray) -> np.ndarray:
    """Rows `indices` of a split: (len(indices), seq_len + 1) int32."""
    src, wanted = self._sources[split], [int(i) for i in indices]
    size, tail = self._record_bytes[split], 4 * (self.seq_len + 1)
    if size is not None:
      raw = src.data_source.__getitems__(wanted)
      if all(len(r) == size for r in raw):
        rows = np.frombuffer(b"".join(r[-tail:] for r in raw), np.int32)
        return rows.reshape(len(wanted), self.seq_len + 1)
    return np.stack([r["tokens"] for r in src.__getitems__(wanted)]).astype(np.int32, copy=False)

  def train_indices(self, first_step: int, num_steps: int, batch_size: int) -> np.ndarray:
    """The train-split rows of batches first_step ..: (num_steps, batch_size) int64."""
    order = self._order(batch_size)
    return np.stack([np.asarray(order[k]) for k in range(first_step, first_step + num_steps)])

  def train_batches(self, first_step: int, num_steps: int, batch_size: int,
                    sharding: jax.sharding.Sharding | None = None) -> jax.Array:
    """Batches first_step .. first_step + num_steps - 1: (num_steps, batch_size, seq_len + 1)."""
    if not (num_steps >= 1 and batch_size >= 1 and first_step >= 0):
      raise ValueError(f"CachedText.train_batches: first_step = {first_step} >= 0, num_steps = "
                       f"{num_steps} and batch_size = {batch_size} >= 1 expected")
    idx = self.train_indices(first_step, num_steps, batch_size)
    rows = self.read("train", idx.ravel()).reshape(num_steps, batch_size, self.seq_len + 1)
    return place(rows, sharding)

  def validation(self, num_rows: int, sharding: jax.sharding.Sharding | None = None) -> jax.Array:
    """The first num_rows rows of the validation split (num_rows, seq_len + 1)."""
    if not 1 <= num_rows <= self.rows["validation"]:
      raise ValueError(f"CachedText.validation: num_rows = {num_rows}: the validation split "
                       f"holds {self.rows['validation']} rows")
    return place(self.read("validation", np.arange(num_rows)), sharding)

  def loss_floor(self) -> float | None:
    """Unknown for real text."""
    return None

  def fingerprint(self, content: bool = True) -> str:
    """A short hash of what the rows were built from (corpus files, tokenizer, row length);
    content=False leaves out the files' content hashes, as a run.json written without them
    recorded it."""
    fp = self.entry["fingerprint"]
    if not content:
      files = [f[:3] for f in fp["corpus"]["files"]]
      fp = {**fp, "corpus": {**fp["corpus"], "files": files}}
    text = json.dumps([fp, self.entry["tokenizer_sha256"]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]

  def describe(self) -> dict[str, Any]:
    """The corpus, its tokenizer and the cache: what run.json and the summary report."""
    e, tok = self.entry, self.tokenizer
    out = dict(corpus=self.corpus.kind, root=str(self.corpus.root), files=len(self.corpus.files),
               documents=e["documents"], characters=e["characters"])
    out.update(dict(self.corpus.extra))
    out.update(skipped_lines=dict(e["skipped"]), skipped_where=dict(e.get("skipped_where", {})),
               train_tokens=e["tokens"]["train"], validation_tokens=e["tokens"]["validation"],
               train_rows=self.rows["train"], validation_rows=self.rows["validation"],
               seq_len=self.seq_len, seed=self.seed,
               tokenizer=tok.origin, tokenizer_size=tok.size, tokenizer_sha256=tok.sha256,
               vocab_size=self.vocab_size, eos_id=self.eos_id, cache=str(self.path),
               cache_bytes=cache.folder_bytes(self.path), fingerprint=self.fingerprint())
    return out
