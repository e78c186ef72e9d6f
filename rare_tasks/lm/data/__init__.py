"""Where a language model's text comes from: the interface every corpus implements, and the
corpus of a config by name.

A text source gives rows of seq_len + 1 tokens: training batch k is a pure function of
(the source's seed, k), so a resumed run needs only the step; the validation rows are fixed.
Both come back as device arrays placed as asked (a source may generate them on the device, as
the synthetic one does, or read them from disk and place them).
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import ml_collections

from rare_tasks.lm.data.markov import MAX_SYMBOLS, MarkovSource

CORPORA = ("synthetic",)


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
  """The text source `config.data` names (config.data.corpus)."""
  d = config.data
  if d.corpus == "synthetic":
    return MarkovSource(vocab_size=d.vocab_size, seq_len=d.seq_len, seed=d.seed,
                        num_states=d.num_states, context_classes=d.context_classes,
                        successors=d.successors,
                        zipf_exponent=d.zipf_exponent, eos_probability=d.eos_probability,
                        # A larger vocabulary (a ladder preset's 50K) keeps its embedding rows;
                        # the source speaks the first MAX_SYMBOLS of them.
                        num_symbols=min(d.vocab_size - 1, MAX_SYMBOLS))
  raise ValueError(f"config.data.corpus = {d.corpus!r}: allowed: one of {list(CORPORA)}")
