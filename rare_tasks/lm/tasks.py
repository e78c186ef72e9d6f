"""The novel tasks injected into pretraining (docs/science.md, "The injected tasks"): comparison
(T_CMP) and modular addition (T_ADD) over random tokens.

A task draws a set S of p token ids from the vocabulary (never EOS) and a hidden bijection
S -> 0..p-1: the i-th drawn token has hidden value i, and the draw is a seeded permutation, so
the bijection is random. An instance is TOK1 TOK2 LABEL for an ordered pair of hidden values
(a, b), all p^2 pairs with the diagonal: T_ADD's LABEL is the token of (a + b) mod p; T_CMP's is
the larger of TOK1 and TOK2 in the hidden order, or with `answer_tokens` one of two reserved
tokens (the first when a >= b, the second when a < b). The pairs are split 50/50 into train and
test by the seed; only train instances are injected. The tasks of one run draw disjoint symbols.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rare_tasks.core.config import check, is_int

NAMES = ("comparison", "addition")
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
               answer_tokens: bool = False) -> tuple[Task, ...]:
  """The tasks `names`, in that order, on disjoint symbols drawn from the non-EOS ids."""
  check_num_symbols(p, names, vocab_size, answer_tokens)
  rng = np.random.default_rng([seed, 0x5359])
  ids = np.array([t for t in range(vocab_size) if t != eos_id], np.int32)
  pool = iter(rng.permutation(ids))
  out = []
  for k, name in enumerate(names):
    symbols = np.array([next(pool) for _ in range(p)], np.int32)
    answers = np.array([next(pool) for _ in range(2 if answer_tokens and name == "comparison"
                                                  else 0)], np.int32)
    instances = _instances(name, symbols, answers)
    order = np.random.default_rng([seed, 0x5350, k]).permutation(p * p)
    half = p * p // 2
    out.append(Task(name, symbols, answers, instances, np.sort(order[:half]),
                    np.sort(order[half:])))
  return tuple(out)


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
