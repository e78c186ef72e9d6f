"""The TFDS builder: rows of seq_len + 1 tokens at a stride of seq_len from raw token streams,
written as array_record and read back without TensorFlow."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from rare_tasks.lm.data import builder


@pytest.mark.parametrize("tokens,rows", [(0, 0), (4, 0), (5, 1), (8, 1), (9, 2), (21, 5)])
def test_rows_of_a_stream(tokens, rows):
  assert builder.rows_of(np.zeros(tokens), 4) == rows


def test_the_builder_writes_every_window_of_each_stream(tmp_path):
  rng = np.random.default_rng(0)
  streams = {"train": rng.integers(0, 1000, 103, dtype=np.int32),
             "validation": np.arange(12, dtype=np.int32)}
  paths = {}
  for split, tokens in streams.items():
    paths[split] = tmp_path / f"{split}.tokens"
    paths[split].write_bytes(tokens.tobytes())
  b = builder.text_rows_builder(paths, 8, str(tmp_path / "tfds"))
  b.download_and_prepare()
  assert b.info.splits["train"].num_examples == 12 and b.info.splits["validation"].num_examples == 1
  read = tfds.builder_from_directory(str(b.data_dir)).as_data_source("train")
  rows = sorted(tuple(read[i]["tokens"]) for i in range(len(read)))
  t = streams["train"]
  assert rows == sorted(tuple(t[i * 8:i * 8 + 9]) for i in range(12))
  assert read[0]["tokens"].dtype == np.int32
