"""Adaptive search, per model size, for the smallest rare-task frequency that is learned.

A size is any hashable key: an integer width (the synthetic models), a ladder preset's name, or
(preset, run length) (the language models). Each round proposes, for every key still searching,
one ascending list of candidate frequencies; the caller trains every (seed, candidate) pair of
every key (one ensemble per key and round), tells the search which pairs learned the rare task,
and asks for the next round:

  search = FrequencySearch(keys, num_seeds, centers, settings)
  while (candidates := search.next_round()) is not None:
    search.record({k: train(k, f) for k, f in candidates.items()})  # bool (num_seeds, C)
  summary = search.results()

A key goes through two phases:
- bracket: log-spaced candidates over [center / bracket_factor, center * bracket_factor]; while
  some seed learned none of its candidates (or learned even the smallest one), the next round
  expands upward (downward) past the frequencies tested so far, over the same log span, at most
  max_expansions times and never past [min_frequency, max_frequency];
- refine: refine_rounds rounds of candidates strictly inside the union of the seeds' brackets,
  each shrinking its ratio hi / lo by about num_candidates + 1.
A key that is done gets no candidates (it is left out of the round) while the others go on.

Learning is assumed monotone in frequency, but results need not be: a seed's threshold is the
smallest tested frequency f such that every tested frequency >= f learned, and its bracket is
(largest tested frequency below that threshold, threshold) (see `bracket`).

The candidates of every round are a deterministic function of the results recorded before it, so
a caller that stored its results can resume after a crash: a fresh search built with the same
arguments, fed the stored results in order through `record`, proposes the same candidates again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class SearchSettings:
  """How candidates are placed; frequencies are always kept inside [min_frequency, max_frequency].

  Attributes:
    min_frequency: smallest frequency the search may propose (> 0).
    max_frequency: largest frequency the search may propose (> min_frequency).
    num_candidates: candidates per key per round, C.
    bracket_factor: the first round spans center / factor .. center * factor on a log scale; an
      expansion round spans a factor**2 beyond the frequencies tested so far.
    refine_rounds: rounds of refinement after the bracket phase.
    max_expansions: most expansion rounds per key in the bracket phase.
  """

  min_frequency: float
  max_frequency: float
  num_candidates: int = 8
  bracket_factor: float = 4.0
  refine_rounds: int = 2
  max_expansions: int = 3

  @classmethod
  def of(cls, design: Mapping[str, Any]) -> SearchSettings:
    """The settings of a study's config.design (the fields named as here)."""
    return cls(min_frequency=design["min_frequency"], max_frequency=design["max_frequency"],
               num_candidates=design["num_candidates"], bracket_factor=design["bracket_factor"],
               refine_rounds=design["refine_rounds"], max_expansions=design["max_expansions"])

  def __post_init__(self):
    if not 0 < self.min_frequency < self.max_frequency:
      raise ValueError(f"need 0 < min_frequency < max_frequency, got {self.min_frequency}, "
                       f"{self.max_frequency}")
    if self.num_candidates < 2:
      raise ValueError(f"num_candidates must be at least 2, got {self.num_candidates}")
    if self.bracket_factor <= 1:
      raise ValueError(f"bracket_factor must exceed 1, got {self.bracket_factor}")
    if self.refine_rounds < 0 or self.max_expansions < 0:
      raise ValueError("refine_rounds and max_expansions must be non-negative")


@dataclasses.dataclass(frozen=True)
class KeyResult:
  """The search's estimate for one key (size), from every frequency tested for it.

  Attributes:
    key: the size's key (a width, a preset's name, ...).
    thresholds: per seed, sqrt(lo * hi) of its final bracket; hi when no unlearned frequency was
      tested below hi (see upper_bound); NaN when the seed learned at no tested frequency,
      shape (S,).
    lo: per seed, the largest tested frequency below the threshold, 0 when there is none,
      shape (S,).
    hi: per seed, the threshold rule's frequency (the smallest tested f with every tested
      frequency >= f learned), inf when the seed did not learn at the largest tested one, (S,).
    upper_bound: per seed, whether its threshold is only an upper bound (lo == 0: it learned at
      every tested frequency), shape (S,) bool.
    min_frequency: geometric median of the thresholds over seeds, exp(median(log)), a seed that
      never learned counting as +inf; NaN when that median is not finite.
    low: smallest threshold over seeds (NaN when no seed learned).
    high: largest threshold over seeds; NaN when some seed never learned (it lies above the
      searched range).
    resolution: the largest hi / lo over the seeds bracketed on both sides; NaN when none is.
    never_learned: no seed learned at any tested frequency (all thresholds NaN); whether that
      includes max_frequency is told by searched[1].
    below_range: some seed learned at min_frequency and every tested frequency above it, so its
      threshold is at or below the search's lower bound.
    searched: (smallest, largest) tested frequency; NaN before any result.
  """

  key: Hashable
  thresholds: np.ndarray
  lo: np.ndarray
  hi: np.ndarray
  upper_bound: np.ndarray
  min_frequency: float
  low: float
  high: float
  resolution: float
  never_learned: bool
  below_range: bool
  searched: tuple[float, float]


def bracket(frequencies: np.ndarray, learned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-seed bracket (lo, hi) of tested frequencies (T,) and outcomes learned (S, T) -> (S,), (S,).

  hi is the seed's threshold: the smallest tested frequency f such that every tested frequency
  >= f learned (inf when the largest tested frequency did not learn); lo is the largest tested
  frequency below hi, i.e. the largest one that did not learn (0 when every tested one learned).
  Frequencies need not be sorted or distinct; a frequency with any unlearned test counts as
  unlearned.
  """
  f = np.asarray(frequencies, dtype=np.float64)
  unlearned = ~np.asarray(learned, dtype=bool)
  lo = np.max(np.where(unlearned, f, 0.0), axis=-1, initial=0.0)
  hi = np.min(np.where(f > lo[:, None], f, np.inf), axis=-1, initial=np.inf)
  return lo, hi


@dataclasses.dataclass
class _Width:
  """Mutable state of one key: everything tested so far and where its search stands."""

  frequencies: list[np.ndarray] = dataclasses.field(default_factory=list)
  learned: list[np.ndarray] = dataclasses.field(default_factory=list)
  expansions: int = 0
  refined: int = 0
  refining: bool = False

  def tested(self, num_seeds: int) -> tuple[np.ndarray, np.ndarray]:
    if not self.frequencies:
      return np.zeros(0), np.zeros((num_seeds, 0), bool)
    return np.concatenate(self.frequencies), np.concatenate(self.learned, axis=1)


class FrequencySearch:
  """Rounds of candidate frequencies per key, adapted to which (seed, candidate) pairs learned.

  Stateful: `next_round` proposes (and, until `record`, keeps proposing) the same candidates;
  `record` takes their outcomes and plans the next round. Replaying stored outcomes into a fresh
  search with the same arguments reproduces every round's candidates exactly.
  """

  def __init__(self, keys: Sequence[Hashable], num_seeds: int,
               centers: Mapping[Hashable, float], settings: SearchSettings):
    """keys: the sizes to search (distinct, hashable); num_seeds: S, seeds trained per
    candidate; centers: a first guess of the threshold per key (clipped into the search's
    bounds)."""
    self.keys = tuple(keys)
    if len(set(self.keys)) != len(self.keys):
      raise ValueError(f"keys must be distinct, got {self.keys}")
    missing = [w for w in self.keys if w not in centers]
    if missing:
      raise ValueError(f"no center for keys {missing}")
    if num_seeds < 1:
      raise ValueError(f"num_seeds must be at least 1, got {num_seeds}")
    self.num_seeds = int(num_seeds)
    self.settings = settings
    self._state = {w: _Width() for w in self.keys}
    self._history: list[tuple[dict[Hashable, np.ndarray], dict[Hashable, np.ndarray]]] = []
    s = settings
    self._pending: dict[Hashable, np.ndarray] = {}
    for w in self.keys:
      c = float(np.clip(centers[w], s.min_frequency, s.max_frequency))
      low = max(c / s.bracket_factor, s.min_frequency)
      high = min(c * s.bracket_factor, s.max_frequency)
      self._pending[w] = np.geomspace(low, high, s.num_candidates)

  @property
  def round_index(self) -> int:
    """Number of rounds recorded so far (the index of the round `next_round` proposes)."""
    return len(self._history)

  @property
  def history(self) -> list[tuple[dict[Hashable, np.ndarray], dict[Hashable, np.ndarray]]]:
    """(candidates, learned) of every recorded round, in order: what a caller stores to resume."""
    return [({w: f.copy() for w, f in c.items()}, {w: x.copy() for w, x in r.items()})
            for c, r in self._history]

  def next_round(self) -> dict[Hashable, np.ndarray] | None:
    """Candidates of the next round: key -> (C,) float64, strictly ascending; None when done.

    Keys whose search is over are left out. Calling again before `record` gives the same.
    """
    if not self._pending:
      return None
    return {w: f.copy() for w, f in self._pending.items()}

  def record(self, learned: Mapping[Hashable, np.ndarray],
             candidates: Mapping[Hashable, np.ndarray] | None = None) -> None:
    """Outcomes of the round `next_round` proposed: key -> bool (num_seeds, C), [s, j] whether
    seed s learned the rare task at candidate j.

    Must cover exactly the keys of that round. candidates, if given (e.g. when replaying stored
    rounds), must match the proposed ones; a mismatch means the settings or results changed.
    """
    if not self._pending:
      raise RuntimeError("the search is over; there is no round to record")
    if set(learned) != set(self._pending):
      raise ValueError(f"results for keys {list(learned)}, but the round proposed "
                       f"{list(self._pending)}")
    if candidates is not None:
      for w, f in self._pending.items():
        given = np.asarray(candidates.get(w, ()), dtype=np.float64)
        if given.shape != f.shape or not np.allclose(given, f, rtol=1e-12, atol=0.0):
          raise ValueError(f"stored candidates of key {w!r} differ from the ones proposed")
    outcome = {}
    for w, f in self._pending.items():
      x = np.asarray(learned[w], dtype=bool)
      if x.shape != (self.num_seeds, len(f)):
        raise ValueError(f"key {w!r}: learned has shape {x.shape}, expected "
                         f"{(self.num_seeds, len(f))}")
      outcome[w] = x.copy()
      self._state[w].frequencies.append(f)
      self._state[w].learned.append(outcome[w])
    self._history.append((self._pending, outcome))
    planned = {w: self._plan(w) for w in self._pending}
    self._pending = {w: f for w, f in planned.items() if f is not None}

  def _plan(self, width: Hashable) -> np.ndarray | None:
    """Next candidates of one key from everything tested for it, or None when it is done."""
    s, state = self.settings, self._state[width]
    f, x = state.tested(self.num_seeds)
    lo, hi = bracket(f, x)
    if not state.refining:
      up = bool(np.isinf(hi).any()) and f.max() < s.max_frequency
      down = bool((lo == 0).any()) and f.min() > s.min_frequency
      if (up or down) and state.expansions < s.max_expansions:
        state.expansions += 1
        return self._expand(f.min(), f.max(), up, down)
      state.refining = True
    both = (lo > 0) & np.isfinite(hi)
    if state.refined >= s.refine_rounds or not both.any():
      return None
    state.refined += 1
    return np.geomspace(lo[both].min(), hi[both].max(), s.num_candidates + 2)[1:-1]

  def _expand(self, smallest: float, largest: float, up: bool, down: bool) -> np.ndarray:
    """C candidates beyond the tested range: above largest, below smallest, or split between."""
    s = self.settings
    span = s.bracket_factor ** 2
    num_down = (s.num_candidates // 2 if up else s.num_candidates) if down else 0
    num_up = s.num_candidates - num_down
    below = np.geomspace(max(smallest / span, s.min_frequency), smallest, num_down + 1)[:-1]
    above = np.geomspace(largest, min(largest * span, s.max_frequency), num_up + 1)[1:]
    return np.concatenate([below, above])

  def tested(self, key: Hashable) -> tuple[np.ndarray, np.ndarray]:
    """Every frequency tested for `key` in round order (T,) and its outcomes, bool (S, T)."""
    f, x = self._state[key].tested(self.num_seeds)
    return f.copy(), x.copy()

  def results(self) -> dict[Hashable, KeyResult]:
    """Estimate per key from everything recorded so far (final once `next_round` is None)."""
    return {w: self._result(w) for w in self.keys}

  def _result(self, width: Hashable) -> KeyResult:
    f, x = self._state[width].tested(self.num_seeds)
    lo, hi = bracket(f, x)
    learned = np.isfinite(hi)
    upper = learned & (lo == 0)
    with np.errstate(invalid="ignore"):
      thresholds = np.where(learned, np.where(upper, hi, np.sqrt(lo * hi)), np.nan)
    median = float(np.exp(np.median(np.log(np.where(learned, thresholds, np.inf)))))
    both = (lo > 0) & learned
    return KeyResult(
        key=width, thresholds=thresholds, lo=lo, hi=hi, upper_bound=upper,
        min_frequency=median if np.isfinite(median) else float("nan"),
        low=float(thresholds[learned].min()) if learned.any() else float("nan"),
        high=float(thresholds.max()) if learned.all() else float("nan"),
        resolution=float((hi[both] / lo[both]).max()) if both.any() else float("nan"),
        never_learned=not learned.any(),
        below_range=bool((hi <= self.settings.min_frequency).any()),
        searched=(float(f.min()), float(f.max())) if f.size else (float("nan"), float("nan")))


def smallest_key(keys: Sequence[Hashable], min_frequency: Sequence[float],
                 low: Sequence[float], high: Sequence[float], frequencies: Sequence[float]
                 ) -> tuple[list[Hashable | None], list[Hashable | None], list[Hashable | None]]:
  """The first key, in the order given (smallest size first), that learns each target frequency.

  A key learns f when its threshold is <= f (NaN thresholds learn nothing); larger keys need not
  learn it too. keys (K,) in ascending size with per-key thresholds min_frequency, low, high
  (K,) as in KeyResult; frequencies (F,). Returns (min_key, min_key_low, min_key_high), each a
  list of F keys, None where no key of the list learns f: min_key from the median thresholds,
  min_key_low (optimistic) from `low`, min_key_high (conservative) from `high`, so that
  min_key_low is no later in the order than min_key, nor min_key than min_key_high, whenever
  low <= min_frequency <= high.
  """
  f = np.atleast_1d(np.asarray(frequencies, dtype=np.float64))

  def first(thresholds: Sequence[float]) -> list[Hashable | None]:
    t = np.asarray(thresholds, dtype=np.float64)
    learns = t[None, :] <= f[:, None]  # (F, K); NaN compares False
    return [keys[int(np.argmax(row))] if row.any() else None for row in learns]

  return first(min_frequency), first(low), first(high)


def smallest_width(widths: Sequence[int], min_frequency: Sequence[float], low: Sequence[float],
                   high: Sequence[float], frequencies: Sequence[float]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`smallest_key` for integer widths in any order: (min_width, min_width_low, min_width_high),
  each (F,) float64, NaN where no width of the list learns f."""
  order = np.argsort(np.asarray(widths), kind="stable")
  w = [float(np.asarray(widths)[i]) for i in order]

  def pick(values: Sequence[float]) -> list[float]:
    return [float(np.asarray(values, dtype=np.float64)[i]) for i in order]

  found = smallest_key(w, pick(min_frequency), pick(low), pick(high), frequencies)
  mid, low_, high_ = (np.array([np.nan if k is None else k for k in keys], dtype=np.float64)
                      for keys in found)
  return mid, low_, high_


def log_slope(widths: Sequence[float], frequencies: Sequence[float]) -> float:
  """Least-squares slope of log frequency against log width over the finite positive points.

  widths and frequencies (W,); NaN when fewer than 2 such points or fewer than 2 distinct widths.
  """
  w = np.asarray(widths, dtype=np.float64)
  f = np.asarray(frequencies, dtype=np.float64)
  keep = np.isfinite(w) & np.isfinite(f) & (w > 0) & (f > 0)
  if keep.sum() < 2 or np.unique(w[keep]).size < 2:
    return float("nan")
  return float(np.polyfit(np.log(w[keep]), np.log(f[keep]), 1)[0])


def log_slope_interval(sizes: Sequence[float], seed_thresholds: Sequence[Sequence[float]],
                       num_resamples: int = 2000, level: float = 0.9, seed: int = 0,
                       min_points: int = 3) -> tuple[float, float, float]:
  """The power law of the frequency needed against size, with a bootstrap interval over seeds.

  sizes (K,) > 0; seed_thresholds: per size its seeds' thresholds (any count each; inf or NaN
  for a seed that learned nothing). The fit is `log_slope` through each size's median threshold
  (inf counting as the largest; a size whose median is not finite is left out) over the sizes
  that have one, at least `min_points` of them. Each resample draws every size's seeds with
  replacement and fits again (a resample with fewer than min_points finite medians is dropped).
  Returns (slope, low, high): the fit and the central `level` interval of the resamples' slopes;
  NaN (all three) with fewer than min_points sizes, and low, high NaN when fewer than half the
  resamples give a slope.
  """
  x = np.asarray(sizes, dtype=np.float64)
  per_size = [np.where(np.isfinite(np.asarray(t, float)), np.asarray(t, float), np.inf)
              for t in seed_thresholds]
  if len(per_size) != x.size:
    raise ValueError(f"{x.size} sizes but thresholds for {len(per_size)}")

  def fit(medians: np.ndarray) -> float:
    ok = np.isfinite(medians)
    return log_slope(x[ok], medians[ok]) if ok.sum() >= min_points else float("nan")

  medians = np.array([np.median(t) if t.size else np.inf for t in per_size])
  slope = fit(medians)
  if not np.isfinite(slope):
    return float("nan"), float("nan"), float("nan")
  rng = np.random.default_rng(seed)
  slopes = []
  for _ in range(num_resamples):
    resampled = np.array([np.median(rng.choice(t, t.size)) if t.size else np.inf
                          for t in per_size])
    slopes.append(fit(resampled))
  slopes = np.asarray(slopes)
  slopes = slopes[np.isfinite(slopes)]
  if slopes.size < num_resamples / 2:
    return slope, float("nan"), float("nan")
  tail = (1 - level) / 2 * 100
  low, high = np.percentile(slopes, [tail, 100 - tail])
  return slope, float(low), float(high)
