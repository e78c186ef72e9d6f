"""Where a training loop stops: the evaluation steps, and the ends of its dispatches."""

from __future__ import annotations


def eval_steps(total: int, every: int) -> list[int]:
  """The steps at which models are measured (and may be checkpointed): multiples of `every`
  below `total`, and `total`."""
  return list(range(every, total, every)) + [total]


def chunk_bounds(total: int, every: int, per_dispatch: int) -> list[int]:
  """The steps where one dispatch of a scanned train program ends: the evaluations, and every
  `per_dispatch` steps between them."""
  return sorted(set(eval_steps(total, every)) | set(range(per_dispatch, total, per_dispatch)))
