"""The tokenizer: a trained byte-level BPE's round trip, special ids and determinism; a given
tokenizer.json; the padded model vocabulary; tokenizers that cannot be used."""

import json

import pytest

from rare_tasks.core.config import ConfigError
from rare_tasks.lm.data import tokenizer
from tests.lm.data.test_corpora import make_unreadable


@pytest.fixture(scope="module")
def bpe(text_docs):
  return tokenizer.train_bpe(text_docs, 400)


def test_a_trained_bpe_round_trips_any_text_with_eos_and_pad_first(bpe):
  assert (bpe.eos_id, bpe.pad_id) == (0, 1)
  assert bpe.tokenizer.id_to_token(0) == tokenizer.EOS
  assert 258 < bpe.size <= 400
  texts = ["The rare task learns.", "naïve café — 日本", "def f(x):\n\treturn x  # ✓ \U0001F600",
           "unseen: ζωή ﬁ \x00\x7f"]
  for text, ids in zip(texts, bpe.encode(texts)):
    assert bpe.decode(ids) == text
    assert 0 not in ids and max(ids) < bpe.size  # no special token is added
  # Frequent words are merged: far fewer tokens than bytes.
  sample = "The rare task learns the width"
  assert len(bpe.encode([sample])[0]) < len(sample.encode()) / 2


def test_training_is_deterministic(bpe, text_docs):
  assert tokenizer.train_bpe(text_docs, 400).json == bpe.json


@pytest.mark.parametrize("size,padded", [(1, 128), (128, 128), (129, 256), (50_280, 50_304),
                                         (100_278, 100_352)])
def test_the_model_vocabulary_is_the_tokenizer_padded_to_128(size, padded):
  assert tokenizer.padded_vocab(size) == padded


def test_a_tokenizer_file_loads_with_its_special_ids(bpe, tmp_path):
  path = tmp_path / "tokenizer.json"
  bpe.save(path)
  tok = tokenizer.load(str(path))
  assert tok.json == bpe.json and tok.sha256 == bpe.sha256 and tok.origin == str(path)
  assert tok.encode(["café"]) == bpe.encode(["café"])
  assert tok.model_vocab_size == tokenizer.padded_vocab(bpe.size)


def test_a_released_style_tokenizer_finds_its_end_of_text(bpe):
  spec = json.loads(bpe.json)
  for added in spec["added_tokens"]:
    added["content"] = {"<|endoftext|>": "</s>", "<|padding|>": "<pad>"}[added["content"]]
  spec["model"]["vocab"]["</s>"] = spec["model"]["vocab"].pop("<|endoftext|>")
  spec["model"]["vocab"]["<pad>"] = spec["model"]["vocab"].pop("<|padding|>")
  tok = tokenizer.from_json(json.dumps(spec), "released")
  assert (tok.eos_id, tok.pad_id) == (0, 1)


@pytest.mark.parametrize("content,match", [
    ("{not json", "not a Hugging Face tokenizer.json"),
    ('{"model": {"type": "Nope"}}', "not a Hugging Face tokenizer.json"),
])
def test_a_tokenizer_file_that_does_not_parse_is_refused(tmp_path, content, match):
  path = tmp_path / "tokenizer.json"
  path.write_text(content)
  with pytest.raises(ConfigError, match=rf"data\.tokenizer = .*{match}"):
    tokenizer.load(str(path))
  with pytest.raises(ConfigError, match=r"data\.tokenizer = .*no such file"):
    tokenizer.load(str(tmp_path / "missing.json"))


def test_a_truncated_tokenizer_file_is_refused_in_one_line_naming_field_value_and_allowed(
    bpe, tmp_path):
  path = tmp_path / "tokenizer.json"
  path.write_text(bpe.json[:len(bpe.json) // 2])
  with pytest.raises(ConfigError) as e:
    tokenizer.load(str(path))
  message = str(e.value)
  assert message.startswith(f"config.data.tokenizer = {str(path)!r}: not a Hugging Face "
                            "tokenizer.json (EOF while parsing")
  assert message.endswith("; allowed: a file tokenizers.Tokenizer.from_file reads")
  assert "\n" not in message


@pytest.mark.parametrize("make,what", [
    (lambda p: p / "missing.json", "no such file"),
    (lambda p: p, "a folder, not a file"),
    (lambda p: p / "bytes.json", "not UTF-8 JSON"),
])
def test_a_tokenizer_path_that_is_no_file_is_refused_naming_field_and_value(tmp_path, make, what):
  (tmp_path / "bytes.json").write_bytes(b'{"\xff": 1}')
  path = str(make(tmp_path))
  with pytest.raises(ConfigError) as e:
    tokenizer.load(path)
  assert str(e.value) == (f"config.data.tokenizer = {path!r}: {what}; allowed: a Hugging Face "
                          "tokenizer.json, or '' to train a byte-level BPE on the corpus")


def test_a_tokenizer_file_that_cannot_be_read_is_refused(bpe, tmp_path):
  path = tmp_path / "tokenizer.json"
  bpe.save(path)
  make_unreadable(path)
  try:
    with pytest.raises(ConfigError, match=r"data\.tokenizer = .*: cannot be read \(Permission "
                                          r"denied\); allowed: a Hugging Face tokenizer\.json"):
      tokenizer.load(str(path))
  finally:
    path.chmod(0o644)


def test_a_tokenizer_without_end_of_text_is_refused(bpe):
  spec = json.loads(bpe.json)
  spec["added_tokens"] = []
  spec["model"]["vocab"]["plain"] = spec["model"]["vocab"].pop("<|endoftext|>")
  with pytest.raises(ConfigError, match="an end-of-text token"):
    tokenizer.from_json(json.dumps(spec), "no-eos")


def test_a_tokenizer_larger_than_the_vocabulary_is_refused(bpe):
  tokenizer.check_fits(bpe, bpe.size)
  with pytest.raises(ConfigError, match=rf"data\.vocab_size = 300: .*{bpe.size:,} tokens"):
    tokenizer.check_fits(bpe, 300)
  with pytest.raises(ConfigError, match=r"data\.vocab_size = 200: allowed: at least 258"):
    tokenizer.train_bpe(["text"], 200)
