"""A small real-text corpus for the language-model tests: Dolma-format shards of generated
documents in the three compressions, and a dataset cache of this session only."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import zstandard

# Words with accents, a dash and CJK, so that a byte-level BPE sees multi-byte characters.
_STEMS = ("the", "rare", "task", "model", "learns", "width", "frequency", "token", "café",
          "naïve", "—", "日本", "loss", "gradient", "layer", "burst", "skill", "data")


def documents(count: int = 240, seed: int = 0) -> list[str]:
  """`count` documents of Zipf-distributed words, sentences and newlines."""
  rng = np.random.default_rng(seed)
  words = [f"{a}{b}" for a in _STEMS for b in ("", "s", "ed", "ing")]
  p = 1.0 / np.arange(1, len(words) + 1)
  p /= p.sum()
  docs = []
  for _ in range(count):
    n = int(rng.integers(40, 160))
    picked = rng.choice(len(words), n, p=p)
    sentences = [" ".join(words[i] for i in picked[j:j + 9]).capitalize() + "."
                 for j in range(0, n, 9)]
    docs.append("\n".join(sentences))
  return docs


def write_shards(folder: Path, docs: list[str]) -> list[Path]:
  """The documents as three shards (jsonl, jsonl.gz, json.zst) in order, with the Dolma
  fields beside `text`."""
  folder.mkdir(parents=True, exist_ok=True)
  thirds = np.array_split(np.arange(len(docs)), 3)
  names = ("a.jsonl", "b.jsonl.gz", "c.json.zst")
  paths = []
  for name, idx in zip(names, thirds):
    lines = "".join(json.dumps({"id": f"doc{i}", "source": "test", "text": docs[i]}) + "\n"
                    for i in idx).encode()
    path = folder / name
    if name.endswith(".gz"):
      path.write_bytes(gzip.compress(lines))
    elif name.endswith(".zst"):
      path.write_bytes(zstandard.ZstdCompressor().compress(lines))
    else:
      path.write_bytes(lines)
    paths.append(path)
  return paths


@pytest.fixture(scope="session")
def text_docs():
  return documents()


@pytest.fixture(scope="session")
def shards(tmp_path_factory, text_docs):
  """A folder of three shards holding text_docs, never modified by a test."""
  folder = tmp_path_factory.mktemp("shards")
  write_shards(folder, text_docs)
  return folder


@pytest.fixture(scope="session")
def text_cache(tmp_path_factory):
  """A dataset cache folder shared by the tests that only read it."""
  return tmp_path_factory.mktemp("text_cache")
