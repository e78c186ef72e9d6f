"""The threshold frequency read off a grid of frequencies: per seed, per size, and between sizes.

The rule, used by every study:
- Per seed: the threshold is the smallest grid frequency f such that every grid frequency >= f
  is learned; there is none (inf) when the highest grid frequency is not learned. Its bracket is
  (next lower grid frequency, f], with low end 0 when f is the lowest grid frequency and
  (f_max, inf) when there is no threshold.
- Per size: the median of its seeds' thresholds (inf counting as the largest), with the range
  (lowest bracket low, highest threshold] over its seeds. A diverged seed counts as learning
  nothing and is listed.
- Between sizes: two sizes differ only when their ranges do not overlap.

Why: a seed's smallest learned frequency taken alone would count a frequency learned below an
unlearned one (learned at 0.1 and 0.4 but not 0.2 is a threshold of 0.4, not 0.1); a median
over seeds together with their brackets keeps seed noise visible instead of averaging it away;
and sizes are compared only when their ranges do not overlap, so a difference inside the seed
spread is never read as a trend.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np


def _grid(frequencies: np.ndarray) -> np.ndarray:
  """Checked grid frequencies (F,): one-dimensional, non-empty, finite, > 0 and distinct."""
  f = np.asarray(frequencies, dtype=np.float64)
  if f.ndim != 1 or f.size == 0:
    raise ValueError(f"frequencies must be a non-empty 1-D array, got shape {f.shape}")
  if not np.all(np.isfinite(f)) or not np.all(f > 0):
    raise ValueError(f"frequencies must be finite and > 0, got {f.tolist()}")
  if np.unique(f).size != f.size:
    raise ValueError(f"frequencies must be distinct, got duplicates in {f.tolist()}")
  return f


def _outcomes(learned: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
  """`learned` as a bool array of the given shape, or a ValueError naming what is wrong."""
  a = np.asarray(learned)
  if a.dtype != np.bool_:
    raise ValueError(f"{name} must be bool, got dtype {a.dtype}")
  if a.shape != shape:
    raise ValueError(f"{name} has shape {a.shape}, expected {shape} to match frequencies")
  return a


def _seed_threshold(f: np.ndarray, learned: np.ndarray) -> tuple[float, float]:
  """(threshold, bracket_low) of one seed on a checked grid f (F,) with outcomes learned (F,)."""
  order = np.argsort(f)
  f, learned = f[order], learned[order]
  if not learned[-1]:
    return math.inf, float(f[-1])
  unlearned = np.flatnonzero(~learned)
  first = unlearned[-1] + 1 if unlearned.size else 0  # first of the learned run up to f_max
  return float(f[first]), (float(f[first - 1]) if first > 0 else 0.0)


def seed_threshold(frequencies: np.ndarray, learned: np.ndarray) -> tuple[float, float]:
  """One seed's threshold and the low end of its bracket (low, threshold].

  Args:
    frequencies: grid frequencies (F,), distinct and > 0, in any order.
    learned: whether the seed learned each frequency, bool (F,).

  Returns:
    (threshold, bracket_low): threshold is the smallest grid frequency f such that every grid
    frequency >= f is learned (math.inf if the highest one is not learned); bracket_low is the
    next lower grid frequency (0.0 when f is the lowest, the highest grid frequency when there
    is no threshold).
  """
  f = _grid(frequencies)
  return _seed_threshold(f, _outcomes(learned, f.shape, "learned"))


@dataclasses.dataclass(frozen=True)
class SizeThreshold:
  """The threshold of one model size over its seeds, and its range (low, high].

  Attributes:
    threshold: median of the seeds' thresholds, inf counting as the largest (for an even count,
      the mean of the two middle values, inf if either is inf).
    low: the lowest bracket low over the seeds.
    high: the highest threshold over the seeds (inf if any seed has none).
    seeds: number of seeds.
    seeds_learned_at_max: seeds that learned the highest grid frequency.
    seed_thresholds: each seed's threshold, in seed order (seeds,).
    diverged: positions of the seeds flagged as diverged (counted as learning nothing).
  """

  threshold: float
  low: float
  high: float
  seeds: int
  seeds_learned_at_max: int
  seed_thresholds: tuple[float, ...]
  diverged: tuple[int, ...]


def _median(values: Sequence[float]) -> float:
  """Median with inf as the largest value; an even count takes the mean of the middle two."""
  v = sorted(values)
  mid = len(v) // 2
  if len(v) % 2:
    return v[mid]
  lo, hi = v[mid - 1], v[mid]
  return math.inf if math.isinf(lo) or math.isinf(hi) else (lo + hi) / 2


def size_threshold(frequencies: np.ndarray, learned: np.ndarray,
                   diverged: np.ndarray | None = None) -> SizeThreshold:
  """The threshold of one size from its seeds' outcomes on a grid.

  Args:
    frequencies: grid frequencies (F,), distinct and > 0, in any order.
    learned: whether each seed learned each frequency, bool (S, F) with S >= 1.
    diverged: whether each seed's run diverged, bool (S,), or None for none. A diverged seed
      counts as not learned at every frequency (whatever `learned` says) and is listed.
  """
  f = _grid(frequencies)
  a = np.asarray(learned)
  if a.ndim != 2 or a.shape[0] == 0:
    raise ValueError(f"learned must be (seeds, frequencies) with seeds >= 1, got shape {a.shape}")
  a = _outcomes(a, (a.shape[0], f.size), "learned")
  num_seeds = a.shape[0]
  if diverged is None:
    flags = np.zeros(num_seeds, bool)
  else:
    flags = _outcomes(diverged, (num_seeds,), "diverged")
  a = a & ~flags[:, None]
  per_seed = [_seed_threshold(f, row) for row in a]
  thresholds = tuple(t for t, _ in per_seed)
  return SizeThreshold(
      threshold=_median(thresholds),
      low=min(low for _, low in per_seed),
      high=max(thresholds),
      seeds=num_seeds,
      seeds_learned_at_max=int(a[:, np.argmax(f)].sum()),
      seed_thresholds=thresholds,
      diverged=tuple(int(i) for i in np.flatnonzero(flags)))


def separated(a: SizeThreshold, b: SizeThreshold) -> bool:
  """Whether the ranges (low, high] of two sizes do not overlap: a.high <= b.low or b.high <= a.low.

  The low end is exclusive, so touching ranges (high == low) are separated; a size that learned
  nothing at any seed (low = f_max, high = inf) is separated from one whose high is <= f_max,
  and two sizes both with high = inf never are.
  """
  return a.high <= b.low or b.high <= a.low


def falls_with_size(ordered: Sequence[SizeThreshold]) -> list[bool]:
  """Per adjacent pair of sizes ordered by parameter count, whether the threshold falls.

  True when the pair is separated and the larger size's range lies below the smaller's (its
  high <= the smaller's low); length len(ordered) - 1. This is the only basis on which "the
  threshold falls with size" may be claimed: a pair whose ranges overlap is reported as
  overlapping, never as a fall, however its medians compare.
  """
  return [separated(small, large) and large.high <= small.low
          for small, large in zip(ordered[:-1], ordered[1:])]
