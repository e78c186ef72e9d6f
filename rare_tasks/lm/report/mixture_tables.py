"""The numbers of the language models' mixture design, from what its search tested: per task,
size and run length the needed frequency, its cost, the smallest size that learns a frequency,
and each size against the largest.

Definitions (tested against hand computations):
- a seed's threshold is the smallest tested frequency from which every higher tested one was
  learned; a size's is the median over seeds, its range (lowest bracket low, highest seed
  threshold] (rare_tasks.analysis.thresholds, as thresholds.csv of the injection study);
- compute to learn: the median over the seeds with a threshold of the first learned step of
  the cell at the seed's threshold, times the FLOPs of one step (the ladder's per-token count x
  tokens per step). An injection replaces tokens, so a step costs the same at any frequency;
- background loss: the mean over the same cells of the final validation loss on the
  background text; its delta is the mean of each cell's loss minus its seed's control (a cell
  that injects nothing, trained in the first round).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from rare_tasks.analysis import frequency_search, thresholds

COLUMNS = ("task", "size", "params", "steps", "threshold", "threshold_low", "threshold_high",
           "seeds", "seeds_learned_at_max", "compute_to_learn", "background_loss_delta",
           "total_params", "highest_tested", "never_learned", "resolution", "first_learned_step",
           "flops_per_step", "background_loss", "control_background_loss", "diverged_cells",
           "lowest_learned", "non_monotone_seeds", "center", "center_from")
MIN_SIZE_COLUMNS = ("task", "steps", "frequency", "min_size", "min_size_low", "min_size_high")
TRADEOFF_COLUMNS = ("task", "steps", "size", "reference", "params", "reference_params",
                    "params_ratio", "threshold", "reference_threshold", "upsampling",
                    "compute_to_learn", "reference_compute_to_learn", "compute_ratio",
                    "background_loss", "reference_background_loss", "background_loss_difference")
TARGETS = 6  # target frequencies of the inverse table when none are set


@dataclasses.dataclass(frozen=True)
class DesignRun:
  """A finished (or resumed) mixture design.

  Attributes:
    config: the resolved config.
    wd: its work directory.
    info: per size its parameters (total, non_embedding), flops_per_token, tokens_per_step.
    keys: the search keys (task, size, run length), sizes by non-embedding parameters.
    seeds: the grid's seeds, in order.
    tested: per key every tested frequency (T,) and whether each seed learned it, bool (S, T).
    outcomes: one row per trained cell (mixture_design.outcomes): task ('' for a control),
      size, steps, seed, frequency, learned, diverged, first_learned_step, val_loss, round.
    centers: per key the first round's centre and where it came from.
    rounds: the number of rounds trained.
  """

  config: ml_collections.ConfigDict
  wd: Path
  info: dict[str, Any]
  keys: list[tuple[str, str, int]]
  seeds: list[int]
  tested: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]]
  outcomes: list[dict[str, Any]]
  centers: dict[tuple[str, str, int], tuple[float, str]]
  rounds: int

  def params(self, size: str) -> int:
    """Non-embedding parameters of a size."""
    return int(self.info["sizes"][size]["params"]["non_embedding"])

  def flops_per_step(self, size: str) -> float:
    s = self.info["sizes"][size]
    return float(s["flops_per_token"]) * float(s["tokens_per_step"])

  def outcome(self, task: str, size: str, steps: int, seed: int, frequency: float
              ) -> dict[str, Any] | None:
    """The cell trained at these values (its latest round's), or None."""
    found = [o for o in self.outcomes if o["task"] == task and o["size"] == size
             and o["steps"] == steps and o["seed"] == seed and o["frequency"] == frequency]
    return found[-1] if found else None

  def control(self, size: str, steps: int, seed: int) -> dict[str, Any] | None:
    return self.outcome("", size, steps, seed, 0.0)


def merged_outcomes(run: DesignRun, key: tuple[str, str, int]) -> tuple[np.ndarray, np.ndarray]:
  """A key's distinct tested frequencies, ascending (U,), and whether each seed learned each,
  bool (S, U) (a frequency tested twice counts as learned only if it was learned both times)."""
  f, x = run.tested[key]
  uniq = np.unique(f)
  return uniq, np.stack([x[:, f == u].all(axis=1) for u in uniq], axis=1)


def key_threshold(run: DesignRun, key: tuple[str, str, int]) -> thresholds.SizeThreshold:
  """A key's threshold by the injection study's rule over every frequency tested for it."""
  return thresholds.size_threshold(*merged_outcomes(run, key))


def band(run: DesignRun, key: tuple[str, str, int]) -> tuple[float, int]:
  """(lowest_learned, non_monotone_seeds): the lowest tested frequency any seed learned (NaN
  when none did), and how many seeds learned some frequency below one they did not learn.
  Where outcomes flip with frequency, the threshold rule (every higher frequency learned) sits
  at the top of the band [lowest_learned, threshold], and testing more frequencies inside the
  band can only raise it."""
  uniq, learned = merged_outcomes(run, key)
  any_learned = learned.any(axis=0)
  lowest = float(uniq[any_learned].min()) if any_learned.any() else float("nan")
  # a seed is non-monotone when a learned frequency lies below an unlearned one
  below = np.maximum.accumulate(learned, axis=1)
  return lowest, int((below & ~learned).any(axis=1).sum())


def _median(values: Sequence[float]) -> float:
  return float(np.median(values)) if len(values) else float("nan")


def design_rows(run: DesignRun) -> list[dict[str, Any]]:
  """mixture_design.csv: one row per key."""
  rows = []
  for key in run.keys:
    task, size, steps = key
    st = key_threshold(run, key)
    f, x = run.tested[key]
    steps_learned, losses, deltas, controls = [], [], [], []
    for seed, t in zip(run.seeds, st.seed_thresholds):
      if not math.isfinite(t):
        continue
      cell = run.outcome(task, size, steps, seed, t)
      control = run.control(size, steps, seed)
      if cell is None:
        continue
      if cell["first_learned_step"] != "":
        steps_learned.append(float(cell["first_learned_step"]))
      losses.append(cell["val_loss"])
      if control is not None:
        controls.append(control["val_loss"])
        deltas.append(cell["val_loss"] - control["val_loss"])
    first = _median(steps_learned)
    both = [(lo_, hi_) for lo_, hi_ in _seed_brackets(f, x) if lo_ > 0 and math.isfinite(hi_)]
    diverged = sum(1 for o in run.outcomes if o["task"] == task and o["size"] == size
                   and o["steps"] == steps and o["diverged"])
    lowest_learned, non_monotone = band(run, key)
    rows.append({
        "task": task, "size": size, "params": run.params(size), "steps": steps,
        "threshold": st.threshold, "threshold_low": st.low, "threshold_high": st.high,
        "seeds": st.seeds, "seeds_learned_at_max": st.seeds_learned_at_max,
        "compute_to_learn": first * run.flops_per_step(size),
        "background_loss_delta": float(np.mean(deltas)) if deltas else float("nan"),
        "total_params": int(run.info["sizes"][size]["params"]["total"]),
        "highest_tested": float(f.max()), "never_learned": not np.isfinite(
            st.seed_thresholds).any(),
        "resolution": max((hi_ / lo_ for lo_, hi_ in both), default=float("nan")),
        "first_learned_step": first, "flops_per_step": run.flops_per_step(size),
        "background_loss": float(np.mean(losses)) if losses else float("nan"),
        "control_background_loss": float(np.mean(controls)) if controls else float("nan"),
        "diverged_cells": diverged, "lowest_learned": lowest_learned,
        "non_monotone_seeds": non_monotone, "center": run.centers[key][0],
        "center_from": run.centers[key][1]})
  return rows


def _seed_brackets(f: np.ndarray, x: np.ndarray) -> list[tuple[float, float]]:
  lo, hi = frequency_search.bracket(f, x)
  return list(zip(lo.tolist(), hi.tolist()))


def rows_of(rows: Sequence[dict[str, Any]], task: str, steps: int) -> list[dict[str, Any]]:
  """The rows of one task and length, by non-embedding parameters."""
  return sorted([r for r in rows if r["task"] == task and r["steps"] == steps],
                key=lambda r: r["params"])


def lengths(run: DesignRun) -> list[int]:
  return sorted({k[2] for k in run.keys})


def task_names(run: DesignRun) -> list[str]:
  return list(dict.fromkeys(k[0] for k in run.keys))


def targets_of(run: DesignRun, rows: Sequence[dict[str, Any]], task: str) -> list[float]:
  """design.target_frequencies, or TARGETS frequencies spread log-evenly over the task's
  measured thresholds (half the lowest to twice the highest when they span less than 1.5x)."""
  d = run.config.design
  if d.target_frequencies is not None:
    return sorted({float(f) for f in d.target_frequencies})
  found = [r["threshold"] for r in rows if r["task"] == task and math.isfinite(r["threshold"])]
  lo, hi = (min(found), max(found)) if found else (d.min_frequency, d.max_frequency)
  if hi <= lo * 1.5:
    lo, hi = lo / 2, min(hi * 2, d.max_frequency)
  return [float(f) for f in np.geomspace(lo, hi, TARGETS)]


def min_size_rows(run: DesignRun, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """min_size.csv: per task, length and target frequency, the smallest size whose threshold is
  at or below it (by the median; _low by the lowest seed threshold, _high by the highest);
  blank where no size learns it."""
  out = []
  for task in task_names(run):
    for steps in lengths(run):
      these = rows_of(rows, task, steps)
      seeds_low = [min(key_threshold(run, (task, r["size"], steps)).seed_thresholds)
                   for r in these]
      targets = targets_of(run, rows, task)
      mid, low, high = frequency_search.smallest_key(
          [r["size"] for r in these], [_finite(r["threshold"]) for r in these],
          [_finite(x) for x in seeds_low], [_finite(r["threshold_high"]) for r in these],
          targets)
      for i, f in enumerate(targets):
        out.append({"task": task, "steps": steps, "frequency": f, "min_size": mid[i] or "",
                    "min_size_low": low[i] or "", "min_size_high": high[i] or ""})
  return out


def _finite(x: float) -> float:
  return x if math.isfinite(x) else float("nan")


def tradeoff_rows(run: DesignRun, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """tradeoff.csv: per task and length, every smaller size with a threshold against the
  reference, the largest size with one: params_ratio = reference / size parameters,
  upsampling = size / reference threshold, compute_ratio = reference / size compute to learn,
  background_loss_difference = size - reference background loss."""
  out = []
  for task in task_names(run):
    for steps in lengths(run):
      these = [r for r in rows_of(rows, task, steps) if math.isfinite(r["threshold"])]
      if len(these) < 2:
        continue
      ref = these[-1]
      for r in these[:-1]:
        out.append({
            "task": task, "steps": steps, "size": r["size"], "reference": ref["size"],
            "params": r["params"], "reference_params": ref["params"],
            "params_ratio": ref["params"] / r["params"], "threshold": r["threshold"],
            "reference_threshold": ref["threshold"],
            "upsampling": r["threshold"] / ref["threshold"],
            "compute_to_learn": r["compute_to_learn"],
            "reference_compute_to_learn": ref["compute_to_learn"],
            "compute_ratio": ref["compute_to_learn"] / r["compute_to_learn"],
            "background_loss": r["background_loss"],
            "reference_background_loss": ref["background_loss"],
            "background_loss_difference": r["background_loss"] - ref["background_loss"]})
  return out


def power_law(run: DesignRun, rows: Sequence[dict[str, Any]], task: str, steps: int
              ) -> tuple[float, float, float, int]:
  """(exponent, low, high, sizes): the slope of log needed frequency against log
  non-embedding parameters over the sizes with a threshold, with its 90% bootstrap interval
  over seeds; NaN with fewer than three such sizes."""
  these = rows_of(rows, task, steps)
  seeds = [key_threshold(run, (task, r["size"], steps)).seed_thresholds for r in these]
  slope, low, high = frequency_search.log_slope_interval([r["params"] for r in these], seeds)
  return slope, low, high, sum(math.isfinite(r["threshold"]) for r in these)


def grid_models(run: DesignRun, rows: Sequence[dict[str, Any]]) -> int:
  """Models a grid would train to give every key the search's final bracket ratio over the
  searched range [min_frequency, max_frequency]: per key ceil(log(max / min) / log(ratio)) + 1
  frequencies at every seed (a key never bracketed counts its tested frequencies), and one
  control per seed for each size and length."""
  d = run.config.design
  span = math.log(d.max_frequency / d.min_frequency)
  total = 0
  for r in rows:
    ratio = r["resolution"]
    n = (math.ceil(span / math.log(ratio)) + 1 if math.isfinite(ratio) and ratio > 1
         else np.unique(run.tested[(r["task"], r["size"], r["steps"])][0]).size)
    total += n * len(run.seeds)
  pairs = {(r["size"], r["steps"]) for r in rows}
  return total + len(pairs) * len(run.seeds)
