"""Retention of a rare task injected in bursts: per-burst gain, retained fraction and decay.

The schedule itself (which updates are bursts, and how many rare examples each holds) is
`rare_tasks.injection`. A run has `steps` optimiser updates t = 0..steps-1; a measured signal
(e.g. the rare task's feature capture) is indexed by updates done: signal[t] is its value after
t updates, shape (steps + 1,). Burst i at update b_i has the window
b_i..e_i, where e_i is the next burst's update (so signal[e_i] is the value just before it).
The baseline is the same gain over windows without a burst, in the withholding phase.
"""

from __future__ import annotations

import math

import numpy as np


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


def burst_metrics(signal: np.ndarray, bursts: np.ndarray) -> list[dict]:
  """Gain, retention and decay half-life of each burst whose whole window lies in the run.

  Args:
    signal: shape (steps + 1,); signal[t] is the value after t updates.
    bursts: ascending burst update indices, shape (num_bursts,), e.g. from
      `rare_tasks.injection.burst_updates`.

  Burst i at update b has window end e = the next burst's update; for the last burst
  e = b + gap, gap the spacing of the last two bursts, and the burst is dropped if e > steps; a
  lone burst has e = steps. With before = signal[b], after = signal[e] and
  peak = max(signal[b+1 : e+1]):
    gain = peak - before;
    retained_fraction = (after - before) / gain, NaN unless gain > 0 and finite;
    half_life = half-life in updates of the excess signal[t] - before, from a least-squares fit
      of log(excess) against t over t from the (first) argmax of the peak to e where excess > 0:
      +inf if the slope is >= 0, NaN with fewer than 2 points. When retained_fraction >= 1 the
      window shows no decay at all and half_life is +inf; this includes every burst of gap 1
      with a positive gain, whose window is the single update after the burst.
  A window holding a non-finite value gives NaN for all of these, never an exception.

  Returns:
    One dict per kept burst with keys burst (0-based index), update (b), end (e), before, after,
    peak, gain, retained_fraction, half_life.
  """
  signal = np.asarray(signal, dtype=np.float64)
  bursts = np.asarray(bursts, dtype=np.int64)
  if signal.ndim != 1:
    raise ValueError(f"signal must have shape (steps + 1,), got {signal.shape}")
  steps = len(signal) - 1
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
    window = signal[b:e + 1]
    row = {"burst": i, "update": b, "end": e}
    if not np.isfinite(window).all():
      rows.append(row | dict.fromkeys(
          ("before", "after", "peak", "gain", "retained_fraction", "half_life"), math.nan))
      continue
    before, after = float(window[0]), float(window[-1])
    peak_at = 1 + int(np.argmax(window[1:]))
    peak = float(window[peak_at])
    gain = peak - before
    if gain > 0 and math.isfinite(gain):
      retained = (after - before) / gain
      half_life = math.inf if retained >= 1 else _half_life(window, before, peak_at)
    else:
      retained = half_life = math.nan
    rows.append(row | {"before": before, "after": after, "peak": peak, "gain": gain,
                       "retained_fraction": retained, "half_life": half_life})
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


def baseline_gain(signal: np.ndarray, first_burst: int, gap: int,
                  start: int | None = None) -> float:
  """The rise of `signal` that training alone gives over a burst's window, without a burst.

  The same statistic as a burst's gain, max(signal[s+1 : s+gap+1]) - signal[s], over the windows
  of `baseline_starts` (no burst inside: they end at or before the first burst's update); their
  median. NaN when no window fits or one holds a non-finite value. A burst whose gain is many
  times this stands out from training noise.
  """
  signal = np.asarray(signal, dtype=np.float64)
  starts = baseline_starts(first_burst, gap, start)
  if len(starts) == 0 or first_burst > len(signal) - 1:
    return math.nan
  window = signal[starts[0]:first_burst + 1]
  if not np.isfinite(window).all():
    return math.nan
  gains = [signal[s + 1:s + gap + 1].max() - signal[s] for s in starts.tolist()]
  return float(np.median(gains))


def _nanmedian(values: list[float]) -> float:
  values = np.asarray(values, dtype=np.float64)
  values = values[~np.isnan(values)]
  return float(np.median(values)) if len(values) else math.nan


def cell_summary(rows: list[dict]) -> dict:
  """Summary of one cell's `burst_metrics` rows.

  Keys: bursts (count); median_gain, median_retained_fraction, median_half_life (NaN ignored);
  net_rise = the last burst's after minus the first burst's before (the level kept over the run);
  accumulates = net_rise > median_gain, i.e. the run keeps more than one burst gives (a
  ratchet). No rows give NaNs and accumulates False.
  """
  if not rows:
    return {"bursts": 0, "median_gain": math.nan, "median_retained_fraction": math.nan,
            "median_half_life": math.nan, "net_rise": math.nan, "accumulates": False}
  median_gain = _nanmedian([r["gain"] for r in rows])
  net_rise = float(rows[-1]["after"] - rows[0]["before"])
  return {
      "bursts": len(rows),
      "median_gain": median_gain,
      "median_retained_fraction": _nanmedian([r["retained_fraction"] for r in rows]),
      "median_half_life": _nanmedian([r["half_life"] for r in rows]),
      "net_rise": net_rise,
      "accumulates": bool(net_rise > median_gain),
  }
