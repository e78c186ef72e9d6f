"""The TFDS builder that writes token rows as array_record, without TensorFlow.

Each split's rows come from a raw int32 token stream on disk (memory-mapped, so a corpus of any
size is written in bounded memory): row i is tokens[i * seq_len : i * seq_len + seq_len + 1].
TFDS refuses a split with no rows: a caller checks first that every stream holds one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

BUILDER_NAME = "rare_tasks_text_rows"


def rows_of(tokens: np.ndarray, seq_len: int) -> int:
  """Rows of seq_len + 1 tokens at a stride of seq_len in a stream."""
  return max(0, (len(tokens) - 1) // seq_len)


class RareTasksTextRows(tfds.core.GeneratorBasedBuilder):
  """Rows of token ids ("tokens", (seq_len + 1,) int32) in splits train and validation."""

  VERSION = tfds.core.Version("1.0.0")
  # No checksums or metadata files beside this module: without this, TFDS locates them through
  # importlib_resources, which tensorflow-datasets does not install.
  code_path = None

  def __init__(self, *, streams: dict[str, Path], seq_len: int, **kwargs: Any):
    self._streams, self._seq_len = streams, seq_len
    super().__init__(file_format="array_record", **kwargs)

  def _log_download_bytes(self) -> None:  # rare_tasks logs one line of its own per build
    pass

  def _log_download_done(self) -> None:
    pass

  def _info(self) -> tfds.core.DatasetInfo:
    tokens = tfds.features.Tensor(shape=(self._seq_len + 1,), dtype=np.int32,
                                  encoding=tfds.features.Encoding.BYTES)
    return tfds.core.DatasetInfo(builder=self,
                                 features=tfds.features.FeaturesDict({"tokens": tokens}))

  def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
    del dl_manager  # nothing is downloaded
    return {split: self._generate_examples(path) for split, path in self._streams.items()}

  def _generate_examples(self, path: Path) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    size = path.stat().st_size // 4
    tokens = np.memmap(path, np.int32, "r", shape=(size,)) if size else np.zeros(0, np.int32)
    L = self._seq_len
    for i in range(rows_of(tokens, L)):
      yield i, {"tokens": np.asarray(tokens[i * L:i * L + L + 1])}


assert RareTasksTextRows.name == BUILDER_NAME


def text_rows_builder(streams: dict[str, Path], seq_len: int, data_dir: str) -> RareTasksTextRows:
  """The builder of rows of seq_len + 1 tokens from `streams` ({split: raw int32 file})."""
  return RareTasksTextRows(streams=streams, seq_len=seq_len, data_dir=data_dir)
