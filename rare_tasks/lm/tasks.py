"""The novel tasks injected into pretraining (docs/science.md, "The injected tasks"): comparison
(T_CMP) and modular addition (T_ADD) over random tokens.

A task draws a set S of p token ids from the vocabulary (never EOS) and a hidden bijection
S -> 0..p-1: the i-th drawn token has hidden value i, and the draw is a seeded permutation, so
the bijection is random. An instance is TOK1 TOK2 LABEL for an ordered pair of hidden values
(a, b), all p^2 pairs with the diagonal: T_ADD's LABEL is the token of (a + b) mod p; T_CMP's is
the larger of TOK1 and TOK2 in the hidden order, or with `answer_tokens` one of two reserved
tokens (the first when a >= b, the second when a < b). The pairs are split 50/50 into train and
test by the seed (`SPLITS`: over ordered pairs, or over unordered ones so that a pair and its
mirror (b, a) are on the same side); only train instances are injected. The tasks of one run draw
disjoint symbols.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rare_tasks.core.config import check, is_int

NAMES = ("comparison", "addition")
# How the p^2 rows are split into train and test (make_tasks).
SPLITS = ("ordered", "unordered")
# The rows a task is evaluated on (Task.split_rows): test_unseen has neither the pair nor its
# mirror in train, test_mirror has the mirror in train.
SPLIT_NAMES = ("train", "test_unseen", "test_mirror")
PREFIX = 2  # TOK1 TOK2: the prompt an instance's LABEL follows
INSTANCE = PREFIX + 1


@dataclasses.dataclass(frozen=True)
class Task:
  """One injected task: its tokens, every instance, and the train/test split.

  symbols (p,): the token of hidden value i at i. answers (2,) or (0,): reserved answer tokens.
  instances (p^2, 3) int32: TOK1 TOK2 LABEL of the pair (a, b) at row a * p + b.
  train, test: sorted row indices into instances, disjoint, together every row.
  """

  name: str
  symbols: np.ndarray
  answers: np.ndarray
  instances: np.ndarray
  train: np.ndarray
  test: np.ndarray

  @property
  def num_symbols(self) -> int:
    return len(self.symbols)

  def tokens(self) -> np.ndarray:
    """Every token id the task uses."""
    return np.concatenate([self.symbols, self.answers])

  def mirror(self) -> np.ndarray:
    """(p^2,): the row of (b, a) at the row of (a, b)."""
    a, b = np.divmod(np.arange(self.num_symbols ** 2), self.num_symbols)
    return b * self.num_symbols + a

  def off_diagonal(self) -> np.ndarray:
    """(p^2,) bool: a != b."""
    return self.mirror() != np.arange(self.num_symbols ** 2)

  def split_rows(self) -> dict[str, np.ndarray]:
    """Sorted row indices per SPLIT_NAMES: train; test_unseen, the off-diagonal test rows whose
    mirror is not in train; test_mirror, those whose mirror is. A diagonal pair (a, a) is its
    own mirror and its T_CMP label repeats the prompt, so its test rows are in neither (only in
    `test`)."""
    test = self.test[self.off_diagonal()[self.test]]
    seen = np.isin(self.mirror()[test], self.train)
    return {"train": self.train, "test_unseen": test[~seen], "test_mirror": test[seen]}

  def choices(self) -> tuple[np.ndarray, np.ndarray]:
    """The answers an instance chooses among: candidates (p^2, C) int32 token ids and right (p^2,)
    int32, the index in candidates of the LABEL.

    Comparison: C = 2, candidates (TOK1, TOK2), or with answer tokens (answers[0], answers[1]);
    right 0 when a >= b, else 1. Addition: C = p, candidates the symbols (a read-only view, the
    same row for every instance), right (a + b) mod p.
    """
    p = self.num_symbols
    a, b = np.divmod(np.arange(p * p), p)
    if self.name == "addition":
      return np.broadcast_to(self.symbols, (p * p, p)), ((a + b) % p).astype(np.int32)
    right = (a < b).astype(np.int32)
    if len(self.answers):
      return np.tile(self.answers, (p * p, 1)).astype(np.int32), right
    return self.instances[:, :PREFIX].copy(), right


def symbols_needed(names: tuple[str, ...], p: int, answer_tokens: bool) -> int:
  """Token ids the tasks `names` draw: p each, and 2 answer tokens for comparison with them."""
  return sum(p + (2 if answer_tokens and n == "comparison" else 0) for n in names)


def max_num_symbols(names: tuple[str, ...], vocab_size: int, answer_tokens: bool) -> int:
  """The largest p whose tasks fit in the vocabulary's vocab_size - 1 non-EOS ids."""
  answers = symbols_needed(names, 0, answer_tokens)
  return (vocab_size - 1 - answers) // len(names)


def check_num_symbols(p: int, names: tuple[str, ...], vocab_size: int,
                      answer_tokens: bool) -> None:
  """ConfigError naming config.task.num_symbols unless 2 <= p and the symbols fit."""
  high = max_num_symbols(names, vocab_size, answer_tokens)
  check(is_int(p) and 2 <= p <= high, "task.num_symbols", p,
        f"an integer in [2, {high}] (p^2 >= 4 pairs to split into train and test, and "
        f"{len(names)} task(s) of p symbols"
        + (" plus 2 answer tokens" if answer_tokens and "comparison" in names else "")
        + f" within the vocabulary's {vocab_size - 1} non-EOS ids)")


def make_tasks(names: tuple[str, ...], p: int, vocab_size: int, seed: int, eos_id: int = 0,
               answer_tokens: bool = False, split: str = "ordered") -> tuple[Task, ...]:
  """The tasks `names`, in that order, on disjoint symbols drawn from the non-EOS ids, their rows
  split into train and test by `split` (one of SPLITS; see _split)."""
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}: allowed: one of {list(SPLITS)}")
  check_num_symbols(p, names, vocab_size, answer_tokens)
  rng = np.random.default_rng([seed, 0x5359])
  ids = np.array([t for t in range(vocab_size) if t != eos_id], np.int32)
  pool = iter(rng.permutation(ids))
  out = []
  for k, name in enumerate(names):
    symbols = np.array([next(pool) for _ in range(p)], np.int32)
    answers = np.array([next(pool) for _ in range(2 if answer_tokens and name == "comparison"
                                                  else 0)], np.int32)
    train = _split(split, p, seed, k)
    out.append(Task(name, symbols, answers, _instances(name, symbols, answers), train,
                    np.setdiff1d(np.arange(p * p), train)))
  return tuple(out)


def _split(split: str, p: int, seed: int, k: int) -> np.ndarray:
  """The sorted train rows of the k-th task, p^2 // 2 of the p^2 under either split.

  ordered: the first p^2 // 2 rows of a seeded permutation of the rows. unordered: of the
  M = p (p - 1) / 2 off-diagonal pairs {a, b}, the first M // 2 of a seeded permutation (both rows
  of each), and of the p diagonal pairs, the first p^2 // 2 - 2 (M // 2) of another (one row
  each, about half of them); so a pair and its mirror are always on the same side.
  """
  half = p * p // 2
  if split == "ordered":
    return np.sort(np.random.default_rng([seed, 0x5350, k]).permutation(p * p)[:half])
  rng = np.random.default_rng([seed, 0x5355, k])
  a, b = np.triu_indices(p, 1)
  pairs = rng.permutation(len(a))[:len(a) // 2]
  diagonal = rng.permutation(p)[:half - 2 * (len(a) // 2)]
  rows = [a[pairs] * p + b[pairs], b[pairs] * p + a[pairs], diagonal * (p + 1)]
  return np.sort(np.concatenate(rows))


def _instances(name: str, symbols: np.ndarray, answers: np.ndarray) -> np.ndarray:
  p = len(symbols)
  a, b = np.divmod(np.arange(p * p), p)
  if name == "addition":
    label = symbols[(a + b) % p]
  elif name == "comparison":
    label = answers[(a < b).astype(int)] if len(answers) else symbols[np.maximum(a, b)]
  else:
    raise ValueError(f"unknown task {name!r}: allowed: one of {list(NAMES)}")
  return np.stack([symbols[a], symbols[b], label], axis=1).astype(np.int32)
