"""The smallest frequency each size learns a task at, read by one rule, under both scores.

Per task, run length and size, at the grid's first gap: each seed's train accuracy and choice
accuracy (the mean of the last `learned.last_evals` evaluations) per frequency, learned when at
or above learned.threshold (a diverged cell learns nothing); each seed's threshold and
its bracket and the size's median and range (`rare_tasks.analysis.thresholds`), written to
thresholds.csv; whether adjacent sizes separate; the choice accuracy on pairs never injected in
either order beside the count baseline; the format rate; and how far the learning order follows
the frequency order. The summary's headline is each task's thresholds under the criterion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rare_tasks.analysis import thresholds
from rare_tasks.analysis.learning_order import pair_agreement
from rare_tasks.core import tables, workdir
from rare_tasks.core.report import Section, fmt, pct
from rare_tasks.lm.report.injection_view import InjectionRun, seed_mean
from rare_tasks.lm.task_metrics import CRITERIA
from rare_tasks.lm.tasks import SPLIT_NAMES as SPLITS

THRESHOLDS_FILE = "thresholds.csv"
FILES = (THRESHOLDS_FILE,)
COLUMNS = ("task", "size", "steps", "metric", "threshold", "threshold_low", "threshold_high",
           "seeds", "seeds_learned_at_max", "diverged_cells")
NAMES = {"accuracy": "accuracy", "choice_accuracy": "choice accuracy"}


def applies(run: InjectionRun) -> bool:
  return True


def learned_grid(run: InjectionRun, task: str, size: str, steps: int, metric: str
                 ) -> tuple[list[float], np.ndarray, np.ndarray, np.ndarray]:
  """(frequencies ascending, scores (S, F), learned (S, F), diverged (S, F)) of one size and
  length at the first gap, seeds in grid order; a diverged cell (a non-finite loss) learned
  nothing, and a seed without a finished cell at a frequency has a NaN score there (not
  learned)."""
  c = run.config
  freqs = sorted(set(c.grid.frequency))
  seeds = list(c.grid.seed)
  scores = np.full((len(seeds), len(freqs)), np.nan)
  diverged = np.zeros((len(seeds), len(freqs)), bool)
  for r in run.rows:
    if (r["task"] == task and r["size"] == size and r["steps"] == steps
        and r["gap"] == c.grid.gap[0] and r["frequency"] > 0):
      i, j = seeds.index(r["seed"]), freqs.index(r["frequency"])
      scores[i, j] = r[f"mean_train_{metric}"]
      diverged[i, j] = bool(r["diverged"])
  learned = (np.nan_to_num(scores, nan=-1.0) >= c.learned.threshold) & ~diverged
  return freqs, scores, learned, diverged


def size_thresholds(run: InjectionRun, task: str, steps: int, metric: str
                    ) -> dict[str, thresholds.SizeThreshold]:
  """Each size's threshold under `metric`, sizes by parameter count."""
  out = {}
  for s in sorted(run.sizes, key=lambda s: run.params[s]):
    freqs, _, learned, _ = learned_grid(run, task, s, steps, metric)
    out[s] = thresholds.size_threshold(np.array(freqs), learned)
  return out


def threshold_rows(run: InjectionRun) -> list[dict[str, Any]]:
  """thresholds.csv: per task, size, length and metric the threshold, its range and seeds."""
  rows = []
  for t in run.task_list:
    for steps in run.lengths:
      for metric in CRITERIA:
        for size, st in size_thresholds(run, t.name, steps, metric).items():
          diverged = learned_grid(run, t.name, size, steps, metric)[3]
          rows.append({"task": t.name, "size": size, "steps": steps, "metric": metric,
                       "threshold": st.threshold, "threshold_low": st.low,
                       "threshold_high": st.high, "seeds": st.seeds,
                       "seeds_learned_at_max": st.seeds_learned_at_max,
                       "diverged_cells": int(diverged.sum())})
  return rows


def describe(st: thresholds.SizeThreshold) -> str:
  """'0.1 (0.05, 0.2]': the median threshold and its range; 'none' above the grid."""
  mid = "none" if math.isinf(st.threshold) else f"{st.threshold:g}"
  high = "inf)" if math.isinf(st.high) else f"{st.high:g}]"
  return f"{mid} ({st.low:g}, {high}"


def separation(found: dict[str, thresholds.SizeThreshold]) -> list[str]:
  """One phrase per adjacent pair of sizes (by parameter count), and for three or more the
  smallest against the largest: separated and falling, separated and rising, or
  overlapping."""
  sizes = list(found)
  pairs = list(zip(sizes, sizes[1:])) + ([(sizes[0], sizes[-1])] if len(sizes) > 2 else [])
  out = []
  for a, b in pairs:
    if thresholds.separated(found[a], found[b]):
      falls = found[b].high <= found[a].low
      out.append(f"{a} -> {b}: separated, the threshold {'falls' if falls else 'rises'}")
    else:
      out.append(f"{a} -> {b}: ranges overlap")
  return out


def order_agreement(run: InjectionRun, task: str, steps: int, sizes: Sequence[str]
                    ) -> tuple[float, int]:
  """(fraction, pairs): of the pairs of frequencies of one size (first gap, one length) learned
  at different evaluations, or only one of them at all, the fraction whose higher frequency was
  learned first. A seed that never reached the threshold counts as learning after the run's
  end, before the mean over seeds (so a frequency learned at one seed of two is not learned
  early); NaN with no such pair."""
  late = 10.0 * steps
  agree, counted = [], 0
  rows = [dict(r, first=float(r["first_learned_step"]) if r["first_learned_step"] != ""
               else late) for r in run.rows
          if r["task"] == task and r["gap"] == run.config.grid.gap[0] and r["frequency"] > 0
          and r["steps"] == steps]
  for s in sizes:
    first = tables.mean_by([r for r in rows if r["size"] == s], ("frequency",), "first")
    f = np.array(sorted(k[0] for k in first))
    measured = np.array([first[(x,)] for x in f])
    a, n = pair_agreement(measured, -f)
    if n:
      agree.append(a * n)
      counted += n
  return (sum(agree) / counted if counted else float("nan")), counted


def _mean(values: np.ndarray) -> float:
  return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def headline(found: dict[str, dict[str, Any]]) -> str:
  """Per task (task -> its findings) and length, each size's threshold under the criterion."""
  parts = []
  for task, f in found.items():
    for steps, by_size in f["criterion_thresholds"].items():
      at = f" at {steps} steps" if len(f["criterion_thresholds"]) > 1 else ""
      parts.append(f"{task}{at}: threshold ({f['criterion']}) " + ", ".join(
          f"{s} {text}" for s, text in by_size.items()))
  return "; ".join(parts)


def length_lines(run: InjectionRun, task: str, steps: int, numbers: dict[str, Any]
                 ) -> list[str]:
  """One length's exposures, score tables, thresholds and findings; records its numbers."""
  c = run.config
  order = sorted(run.sizes, key=lambda s: run.params[s])
  freqs = sorted(set(c.grid.frequency))
  lines: list[str] = []
  exposures = tables.mean_by([r for r in run.rows if r["task"] == task
                              and r["steps"] == steps and r["frequency"] > 0],
                             ("frequency",), "exposures")
  lines += ["Exposures of each train instance: " + ", ".join(
      f"{f:g}: {fmt(exposures.get((f,), float('nan')))}" for f in freqs) + ".", ""]
  found = {m: size_thresholds(run, task, steps, m) for m in CRITERIA}
  numbers["thresholds"][steps] = {m: {s: dict(vars(st)) for s, st in found[m].items()}
                                  for m in CRITERIA}
  numbers["criterion_thresholds"][steps] = {s: describe(st) for s, st in
                                            found[c.learned.criterion].items()}
  for m in CRITERIA:
    lines += [f"Train {NAMES[m]} (seed mean; seeds learned of {len(c.grid.seed)}):", "",
              "| size | " + " | ".join(f"{f:g}" for f in freqs) + " |",
              "|---|" + "---:|" * len(freqs)]
    for s in order:
      _, scores, learned, _ = learned_grid(run, task, s, steps, m)
      cells = [f"{fmt(_mean(scores[:, j]))} ({int(learned[:, j].sum())})"
               for j in range(len(freqs))]
      lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("")
  lines += ["| size | parameters | threshold, accuracy | threshold, choice accuracy | "
            "seeds learning the top frequency (accuracy / choice) | diverged cells |",
            "|---|---:|---:|---:|---:|---:|"]
  for s in order:
    a, ch = found["accuracy"][s], found["choice_accuracy"][s]
    diverged = int(learned_grid(run, task, s, steps, "accuracy")[3].sum())
    lines.append(f"| {s} | {run.params[s]:,} | {describe(a)} | {describe(ch)} | "
                 f"{a.seeds_learned_at_max} / {ch.seeds_learned_at_max} of {a.seeds} | "
                 f"{diverged} |")
  lines.append("")
  for m in CRITERIA:
    lines.append(f"- {NAMES[m]}: " + "; ".join(separation(found[m])))
  unseen = seed_mean(run.rows, task, c.grid.gap[0], "test_unseen_choice_accuracy", order,
                     [0.0, *freqs], steps)
  fmt_rate = seed_mean(run.rows, task, c.grid.gap[0], "format_rate", order, freqs, steps)
  lines += [f"- choice accuracy on pairs never injected in either order (test_unseen, seed "
            f"mean) at the highest frequency, against the count baseline "
            f"{fmt(run.baseline(task, 'test_unseen'))}: "
            + ", ".join(f"{s} {fmt(unseen[i, -1])}" for i, s in enumerate(order))
            + "; the control's, which never saw the task (the background's own preference): "
            + ", ".join(f"{s} {fmt(unseen[i, 0])}" for i, s in enumerate(order)),
            "- format rate (the argmax is an answer the task allows; train, seed mean) at the "
            "highest frequency: " + ", ".join(f"{s} {fmt(fmt_rate[i, -1])}"
                                              for i, s in enumerate(order))]
  agreement, pairs = order_agreement(run, task, steps, order)
  lines += ["- learning order against frequency order: of the "
            f"{pairs} pairs of frequencies of one size that were learned at different "
            "evaluations (or only one of them at all), "
            f"{pct(agreement)} learned the higher frequency first", ""]
  numbers.setdefault("order_agreement", {})[steps] = agreement
  return lines


def section(run: InjectionRun, task: str) -> Section:
  """The task's heading, its score tables, thresholds and findings; numbers: {task: ...}."""
  c = run.config
  if workdir.is_writer() and task == run.task_list[0].name:
    tables.write_csv(run.wd / THRESHOLDS_FILE, COLUMNS, threshold_rows(run))
  lines = [f"## {task}", "",
           f"Learned: train {NAMES[c.learned.criterion]} >= {c.learned.threshold}, the mean of "
           f"the last {c.learned.last_evals} evaluations (a diverged cell learns nothing). A "
           "seed's threshold is the smallest frequency from which every higher one is learned; "
           "a size's is the median over its seeds, with the range from the lowest bracket to "
           "the highest seed threshold. Count baseline of choice accuracy (ranking the answers "
           "by how often each is a train label; no model): "
           + ", ".join(f"{split} {fmt(run.baseline(task, split))}" for split in SPLITS)
           + ".", ""]
  numbers: dict[str, Any] = {"criterion": NAMES[c.learned.criterion], "criterion_thresholds": {},
                             "thresholds": {}}
  for steps in run.lengths:
    if len(run.lengths) > 1:
      lines += [f"### {task}, {steps} steps", ""]
    lines += length_lines(run, task, steps, numbers)
  numbers["count_baseline"] = {split: run.baseline(task, split) for split in SPLITS}
  return Section(lines, {task: numbers}, FILES, {THRESHOLDS_FILE: "per task, size, length and "
                                                 "score: the threshold and its range"})
