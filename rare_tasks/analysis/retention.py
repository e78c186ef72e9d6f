"""Retention of a rare task injected in bursts: per-burst gain, retained fraction and decay.

The schedule itself (which updates are bursts, and how many rare examples each holds) is
`rare_tasks.injection`. A run has `steps` optimiser updates t = 0..steps-1; a measured signal
(e.g. the rare task's feature capture) is indexed by updates done: signal[t] is its value after
t updates, shape (steps + 1,). Burst i at update b_i has the window
b_i..e_i, where e_i is the next burst's update (so signal[e_i] is the value just before it).
The baseline is the same gain over windows without a burst, in the withholding phase.

Every statistic is computed on the signal's improvement: the signal itself when it improves
upward (a capture, the default), its negation when it improves downward (a loss,
`falling=True`); rows still report levels in the signal's own units.

For a task loss after injections these are effectivity and retainability (Chang et al. 2024):
with falling=True, window=W and lag=t, a burst's gain is its effectivity, the loss just before
the injection minus its lowest value over the next W updates, and its retained fraction is its
retainability at lag t, the share of that drop still held t updates after the lowest point.
`baseline_metrics` gives the same two numbers over windows without an injection, i.e. what
training alone gives, to set beside them.
"""

from __future__ import annotations

import math

import numpy as np

_LEVELS = ("before", "after", "peak", "end_level")
_KEYS = ("before", "after", "peak", "gain", "retained_fraction", "half_life", "lag_step",
         "end_level")


def _half_life(window: np.ndarray, before: float, peak_at: int) -> float:
  """Half-life in updates of the excess window[t] - before, fitted from `peak_at` to the end.

  Least-squares line through log(excess) against t over the points with excess > 0; NaN with
  fewer than 2 such points, +inf when the fitted slope is >= 0.
  """
  t = np.arange(peak_at, len(window), dtype=np.float64)
  excess = window[peak_at:] - before
  keep = excess > 0
  if keep.sum() < 2:
    return math.nan
  slope = np.polyfit(t[keep], np.log(excess[keep]), 1)[0]
  return math.inf if slope >= 0 else float(-math.log(2.0) / slope)


def _check_options(window: int | None, lag: int | None) -> None:
  if window is not None and window < 1:
    raise ValueError(f"window must be >= 1, got {window}")
  if lag is not None and lag < 0:
    raise ValueError(f"lag must be >= 0, got {lag}")


def _window_metrics(up: np.ndarray, b: int, e: int, window: int | None,
                    lag: int | None) -> dict:
  """Statistics of the window b..e of `up`, a signal that improves upward, shape (steps + 1,).

  Needs 0 <= b < e <= steps. Returns before, after, peak, gain, retained_fraction, half_life,
  lag_step and end_level (levels in `up`'s units) as `burst_metrics` defines them; all NaN when
  up[b..e] holds a non-finite value, but for lag_step = e when `lag` is None.
  """
  seg = up[b:e + 1]
  if not np.isfinite(seg).all():
    return dict.fromkeys(_KEYS, math.nan) | ({} if lag is not None else {"lag_step": e})
  last = e - b if window is None else min(window, e - b)
  peak_at = 1 + int(np.argmax(seg[1:last + 1]))
  at = e - b if lag is None else peak_at + lag
  before, peak, end_level = float(seg[0]), float(seg[peak_at]), float(seg[-1])
  after = float(seg[at]) if at <= e - b else math.nan
  gain = peak - before
  if gain > 0 and math.isfinite(gain):
    retained = (after - before) / gain
    # No decay at all up to the window end: the fit below has nothing to see.
    no_decay = (end_level - before) / gain >= 1
    half_life = math.inf if no_decay else _half_life(seg, before, peak_at)
  else:
    retained = half_life = math.nan
  return {"before": before, "after": after, "peak": peak, "gain": gain,
          "retained_fraction": retained, "half_life": half_life, "lag_step": b + at,
          "end_level": end_level}


def _improving(signal: np.ndarray, falling: bool) -> np.ndarray:
  signal = np.asarray(signal, dtype=np.float64)
  if signal.ndim != 1:
    raise ValueError(f"signal must have shape (steps + 1,), got {signal.shape}")
  return -signal if falling else signal


def _own_units(row: dict, falling: bool) -> dict:
  """`row` with its levels (before, after, peak, end_level) back in the signal's own units."""
  return (row | {k: -row[k] for k in _LEVELS}) if falling else row


def burst_metrics(signal: np.ndarray, bursts: np.ndarray, *, window: int | None = None,
                  lag: int | None = None, falling: bool = False) -> list[dict]:
  """Gain, retention and decay half-life of each burst whose whole window lies in the run.

  Args:
    signal: shape (steps + 1,); signal[t] is the value after t updates.
    bursts: ascending burst update indices, shape (num_bursts,), e.g. from
      `rare_tasks.injection.burst_updates`.
    window: W >= 1; the peak is searched over signal[b+1 : min(b+W, e)+1] only. None: up to e.
    lag: t >= 0; `after` is read t updates after the peak, signal[peak_at + t], instead of at e;
      NaN when peak_at + t > e (the next burst would contaminate it). None: at e.
    falling: the signal improves downward (a loss); every statistic is computed on its
      improvement, i.e. on -signal, so the peak is the minimum and the gain a positive drop.

  Burst i at update b has window end e = the next burst's update; for the last burst
  e = b + gap, gap the spacing of the last two bursts, and the burst is dropped if e > steps; a
  lone burst has e = steps. With u the improvement (signal, or -signal when falling),
  before = u[b], after = u[lag_step] (lag_step = e, or peak_at + lag) and
  peak = max(u[b+1 : min(b+W, e)+1]) at the first argmax peak_at:
    gain = peak - before (for a falling signal: signal[b] - min, the drop);
    retained_fraction = (after - before) / gain, NaN unless gain > 0 and finite;
    half_life = half-life in updates of the excess u[t] - before, from a least-squares fit
      of log(excess) against t over t from peak_at to e where excess > 0:
      +inf if the slope is >= 0, NaN with fewer than 2 points. When (u[e] - before) / gain >= 1
      the window shows no decay at all and half_life is +inf; this includes every burst of gap
      1 with a positive gain, whose window is the single update after the burst.
  A window b..e holding a non-finite value gives NaN for all of these (and for lag_step when
  `lag` is set), never an exception.

  Returns:
    One dict per kept burst with keys burst (0-based index), update (b), end (e), before, after,
    peak, gain, retained_fraction, half_life, lag_step (the update where `after` is read; may
    exceed e, with after NaN) and end_level (the level at e). before, after, peak and end_level
    are in the signal's own units (peak is the minimum for a falling signal).
  """
  _check_options(window, lag)
  up = _improving(signal, falling)
  bursts = np.asarray(bursts, dtype=np.int64)
  steps = len(up) - 1
  if len(bursts) > 1 and np.any(np.diff(bursts) <= 0):
    raise ValueError("bursts must be strictly ascending")
  if len(bursts) == 0:
    return []
  if len(bursts) == 1:
    ends = np.array([steps], dtype=np.int64)
  else:
    ends = np.append(bursts[1:], 2 * bursts[-1] - bursts[-2])
  rows = []
  for i, (b, e) in enumerate(zip(bursts.tolist(), ends.tolist())):
    if b < 0 or e > steps:
      continue
    stats = _own_units(_window_metrics(up, b, e, window, lag), falling)
    rows.append({"burst": i, "update": b, "end": e} | stats)
  return rows


def baseline_starts(first_burst: int, gap: int, start: int | None = None) -> np.ndarray:
  """Starts s of the burst-free windows s..s + gap that tile start..first_burst backwards from
  the first burst, ascending int64 (empty when none fits).

  The default start, first_burst // 2, keeps the windows in the second half of the withholding
  phase, after the common tasks' fastest learning.
  """
  if gap < 1 or first_burst < 0:
    raise ValueError(f"need gap >= 1 and first_burst >= 0; got gap={gap}, "
                     f"first_burst={first_burst}")
  start = first_burst // 2 if start is None else max(0, start)
  return np.arange(first_burst - gap, start - 1, -gap, dtype=np.int64)[::-1]


def baseline_metrics(signal: np.ndarray, first_burst: int, gap: int, start: int | None = None,
                     *, window: int | None = None, lag: int | None = None,
                     falling: bool = False) -> dict:
  """A burst's gain and retained fraction as training alone gives them, without a burst.

  Over the windows s..s + gap of `baseline_starts` (no burst inside: they end at or before the
  first burst's update), each treated as if a burst sat at s with window end s + gap, the
  statistics of `burst_metrics` with the same window, lag and falling.

  Args:
    signal: shape (steps + 1,); signal[t] is the value after t updates.
    first_burst, gap, start: as `baseline_starts`.

  Returns:
    {"windows": the number of windows, "median_gain": the median gain,
    "median_retained_fraction": the median retained fraction over the windows where it is
    defined}. Both medians are NaN when no window fits, the first burst lies past the run's end
    or a window holds a non-finite value.
  """
  _check_options(window, lag)
  up = _improving(signal, falling)
  starts = baseline_starts(first_burst, gap, start)
  out = {"windows": len(starts), "median_gain": math.nan, "median_retained_fraction": math.nan}
  if len(starts) == 0 or first_burst > len(up) - 1:
    return out
  if not np.isfinite(up[starts[0]:first_burst + 1]).all():
    return out
  rows = [_window_metrics(up, s, s + gap, window, lag) for s in starts.tolist()]
  return out | {"median_gain": float(np.median([r["gain"] for r in rows])),
                "median_retained_fraction": _nanmedian([r["retained_fraction"] for r in rows])}


def baseline_gain(signal: np.ndarray, first_burst: int, gap: int, start: int | None = None,
                  *, window: int | None = None, falling: bool = False) -> float:
  """The rise of `signal` that training alone gives over a burst's window, without a burst.

  The same statistic as a burst's gain, max(u[s+1 : min(s+W, s+gap)+1]) - u[s] with u the
  improvement (signal, or -signal when `falling`) and W = `window` (None: gap), over the windows
  of `baseline_starts` (no burst inside: they end at or before the first burst's update); their
  median. NaN when no window fits or one holds a non-finite value. A burst whose gain is many
  times this stands out from training noise.
  """
  return baseline_metrics(signal, first_burst, gap, start, window=window,
                          falling=falling)["median_gain"]


def _nanmedian(values: list[float]) -> float:
  values = np.asarray(values, dtype=np.float64)
  values = values[~np.isnan(values)]
  return float(np.median(values)) if len(values) else math.nan


def cell_summary(rows: list[dict], *, falling: bool = False) -> dict:
  """Summary of one cell's `burst_metrics` rows (made with the same `falling`).

  Keys: bursts (count); median_gain, median_retained_fraction, median_half_life (NaN ignored);
  net_rise = the improvement kept over the run: the last burst's level at its window end minus
  the first burst's before, negated for a falling signal (rows without end_level use after);
  accumulates = net_rise > median_gain, i.e. the run keeps more than one burst gives (a
  ratchet). No rows give NaNs and accumulates False.
  """
  if not rows:
    return {"bursts": 0, "median_gain": math.nan, "median_retained_fraction": math.nan,
            "median_half_life": math.nan, "net_rise": math.nan, "accumulates": False}
  median_gain = _nanmedian([r["gain"] for r in rows])
  last = rows[-1].get("end_level", rows[-1]["after"])
  net_rise = float(last - rows[0]["before"])
  if falling:
    net_rise = -net_rise
  return {
      "bursts": len(rows),
      "median_gain": median_gain,
      "median_retained_fraction": _nanmedian([r["retained_fraction"] for r in rows]),
      "median_half_life": _nanmedian([r["half_life"] for r in rows]),
      "net_rise": net_rise,
      "accumulates": bool(net_rise > median_gain),
  }
