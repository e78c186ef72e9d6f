"""The tokenizer of real text: a Hugging Face `tokenizer.json` given by path (OLMo-2's dolma2,
GPT-NeoX-OLMo, ...), or a byte-level BPE trained on the corpus, and the model vocabulary it asks
for.

A trained BPE has `data.vocab_size` tokens at most (fewer when the corpus has fewer merges to
learn), the end-of-text token at id 0 and the padding token at id 1, a byte-level
pre-tokenizer (every byte sequence is encodable, none is unknown) and a byte-level decoder, so
decode(encode(text)) == text. The model's embedding has the tokenizer's size padded up to a
multiple of VOCAB_MULTIPLE rows (the padding ids are never produced).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from rare_tasks.core.config import ConfigError, check

EOS = "<|endoftext|>"
PAD = "<|padding|>"
# End-of-text tokens of released tokenizers, in the order they are looked for.
EOS_NAMES = (EOS, "<|end_of_text|>", "</s>", "<eos>", "<|eos|>")
PAD_NAMES = (PAD, "<|pad|>", "<pad>")
VOCAB_MULTIPLE = 128
# A trained BPE has the 256 bytes and EOS and PAD at least.
MIN_TRAINED_VOCAB = 258
# A trained BPE learns its merges from at most this much of the corpus's text.
TRAINING_CHARACTERS = 256 << 20


@dataclasses.dataclass(frozen=True)
class TextTokenizer:
  """A loaded tokenizer with its special ids; `json` is its serialisation (what is cached)."""

  tokenizer: Tokenizer
  json: str
  eos_id: int
  pad_id: int | None
  origin: str  # the file it came from, or "trained byte-level BPE"

  @property
  def size(self) -> int:
    return self.tokenizer.get_vocab_size(with_added_tokens=True)

  @property
  def sha256(self) -> str:
    return hashlib.sha256(self.json.encode()).hexdigest()

  @property
  def model_vocab_size(self) -> int:
    """The embedding rows a model of this tokenizer has: its size padded to VOCAB_MULTIPLE."""
    return padded_vocab(self.size)

  def encode(self, texts: list[str]) -> list[list[int]]:
    """Token ids of each text (no special tokens added)."""
    return [e.ids for e in self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)]

  def decode(self, ids: list[int]) -> str:
    return self.tokenizer.decode(ids, skip_special_tokens=False)

  def save(self, path: Path) -> None:
    """Writes the tokenizer.json (the cache builds into a folder renamed into place whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(self.json, encoding="utf-8")


def padded_vocab(size: int) -> int:
  """size rounded up to a multiple of VOCAB_MULTIPLE."""
  return -(-size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def _special(tok: Tokenizer, names: tuple[str, ...]) -> int | None:
  for name in names:
    i = tok.token_to_id(name)
    if i is not None:
      return i
  return None


def from_json(text: str, origin: str, field: str = "data.tokenizer") -> TextTokenizer:
  """A tokenizer from the contents of a tokenizer.json; ConfigError naming `field` if it does
  not parse or has no end-of-text token."""
  try:
    tok = Tokenizer.from_str(text)
  except Exception as e:  # tokenizers raises a bare Exception with serde's message
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise ConfigError(f"config.{field} = {origin!r}: not a Hugging Face tokenizer.json "
                      f"({reason}); allowed: a file tokenizers.Tokenizer.from_file reads") from None
  eos = _special(tok, EOS_NAMES)
  check(eos is not None, field, origin,
        f"a tokenizer with an end-of-text token (one of {', '.join(EOS_NAMES)})")
  return TextTokenizer(tok, text, eos, _special(tok, PAD_NAMES), origin)


def load(path: str) -> TextTokenizer:
  """The tokenizer.json at `path` (ConfigError naming data.tokenizer if it cannot be used)."""
  p = Path(path).expanduser()
  allowed = "allowed: a Hugging Face tokenizer.json, or '' to train a byte-level BPE on the corpus"
  if not p.is_file():
    what = "a folder, not a file" if p.is_dir() else "no such file"
    raise ConfigError(f"config.data.tokenizer = {path!r}: {what}; {allowed}")
  try:
    text = p.read_text(encoding="utf-8")
  except UnicodeDecodeError:
    raise ConfigError(f"config.data.tokenizer = {path!r}: not UTF-8 JSON; {allowed}") from None
  except OSError as e:
    raise ConfigError(f"config.data.tokenizer = {path!r}: cannot be read ({e.strerror}); "
                      f"{allowed}") from None
  return from_json(text, str(p.resolve()))


def _capped(texts: Iterable[str], characters: int) -> Iterator[str]:
  seen = 0
  for t in texts:
    if seen >= characters:
      return
    seen += len(t)
    yield t


def train_bpe(texts: Iterable[str], vocab_size: int) -> TextTokenizer:
  """A byte-level BPE of at most vocab_size tokens learnt from `texts` (at most
  TRAINING_CHARACTERS of them); EOS is id 0 and PAD id 1. Deterministic in its inputs."""
  check(vocab_size >= MIN_TRAINED_VOCAB, "data.vocab_size", vocab_size,
        f"at least {MIN_TRAINED_VOCAB} for a trained byte-level BPE (the 256 bytes, EOS and PAD)")
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                show_progress=False)
  tok.train_from_iterator(_capped(texts, TRAINING_CHARACTERS), trainer=trainer)
  return from_json(tok.to_str(), "trained byte-level BPE")


def check_fits(tok: TextTokenizer, vocab_size: int) -> None:
  """ConfigError unless the tokenizer's ids fit in data.vocab_size."""
  check(tok.size <= vocab_size, "data.vocab_size", vocab_size,
        f"at least the tokenizer's {tok.size:,} tokens ({tok.origin}); the model's vocabulary "
        f"will be {padded_vocab(tok.size):,} (a multiple of {VOCAB_MULTIPLE})")
