"""The report of the language models' mixture design: mixture_design.csv (per task, size and
run length the needed frequency with its range, seeds, compute to learn and background-loss
cost), min_size.csv (per task, length and target frequency the smallest size that learns it),
tradeoff.csv (each size at its needed frequency against the largest size at its own),
figures/mixture_design_<task>.png (needed frequency against non-embedding parameters, log-log,
with the power-law fit) and summary.md. The numbers: rare_tasks.lm.report.mixture_tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rare_tasks.core import tables, workdir
from rare_tasks.core.plots import plt, save
from rare_tasks.core.report import Section, diverged_section, fmt, write_summary
from rare_tasks.lm.report.learned_frequency import separation
from rare_tasks.lm.report.mixture_tables import (
  COLUMNS,
  MIN_SIZE_COLUMNS,
  TRADEOFF_COLUMNS,
  DesignRun,
  design_rows,
  grid_models,
  key_threshold,
  lengths,
  min_size_rows,
  power_law,
  rows_of,
  task_names,
  tradeoff_rows,
)

DESIGN_FILE = "mixture_design.csv"
MIN_SIZE_FILE = "min_size.csv"
TRADEOFF_FILE = "tradeoff.csv"
FIGURES = workdir.FIGURES_DIR
FILES = (DESIGN_FILE, MIN_SIZE_FILE, TRADEOFF_FILE, FIGURES)


def sentence(t: dict[str, Any]) -> str:
  """A trade-off row in words."""
  c = t["compute_ratio"]
  cheaper = (f"for {fmt(c)} times less compute to learn" if c >= 1
             else f"for {fmt(1 / c)} times more compute to learn")
  d = t["background_loss_difference"]
  return (f"{t['size']}, a model {fmt(t['params_ratio'])} times smaller than {t['reference']}, "
          f"learns the task when it is upsampled {fmt(t['upsampling'])} times "
          f"({t['threshold']:.3g} against {t['reference_threshold']:.3g}), {cheaper}, at a "
          f"background loss {fmt(abs(d))} nats {'higher' if d >= 0 else 'lower'}")


def figure(path: Path, run: DesignRun, rows: Sequence[dict[str, Any]], task: str) -> None:
  """Needed frequency against non-embedding parameters, log-log, one colour per run length:
  the size's threshold with the range of its seeds' thresholds, the power-law fit where three
  sizes have one, and a size that learned nothing at max as a triangle at the highest frequency
  it was tested at."""
  fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
  for i, steps in enumerate(lengths(run)):
    these = rows_of(rows, task, steps)
    color = f"C{i}"
    x = np.array([r["params"] for r in these], float)
    y = np.array([r["threshold"] for r in these], float)
    seed_t = [np.array(key_threshold(run, (task, r["size"], steps)).seed_thresholds)
              for r in these]
    ok = np.isfinite(y)
    lo = np.array([t[np.isfinite(t)].min() if np.isfinite(t).any() else np.nan for t in seed_t])
    hi = np.array([r["threshold_high"] for r in these], float)
    hi = np.where(np.isfinite(hi), hi, y)
    ax.errorbar(x[ok], y[ok], yerr=[np.maximum(y[ok] - lo[ok], 0),
                                    np.maximum(hi[ok] - y[ok], 0)],
                fmt="o", color=color, capsize=3, label=f"{steps} steps: median (seeds' range)")
    never = ~ok
    if never.any():
      ax.scatter(x[never], [r["highest_tested"] for r, n in zip(these, never) if n],
                 marker="^", color=color, label=f"{steps} steps: not learned up to here")
    slope, s_lo, s_hi, n = power_law(run, rows, task, steps)
    if math.isfinite(slope):
      intercept = np.mean(np.log(y[ok]) - slope * np.log(x[ok]))
      ax.plot(x[ok], np.exp(intercept) * x[ok] ** slope, color=color, ls="--", lw=1,
              label=f"fit: exponent {slope:.2f} [{s_lo:.2f}, {s_hi:.2f}]")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("non-embedding parameters")
  ax.set_ylabel(f"injection frequency needed ({run.config.injection.unit})")
  ax.legend(fontsize=8)
  c = run.config
  ax.set_title(f"{task}: learned (train {c.learned.criterion} >= {c.learned.threshold})",
               fontsize=9)
  save(fig, path)


def figure_path(task: str) -> str:
  return f"{FIGURES}/mixture_design_{task}.png"


def _range(r: dict[str, Any]) -> str:
  mid = "none" if not math.isfinite(r["threshold"]) else f"{r['threshold']:.3g}"
  high = "inf)" if not math.isfinite(r["threshold_high"]) else f"{r['threshold_high']:.3g}]"
  return f"{mid} ({r['threshold_low']:.3g}, {high}"


def _flops(x: float) -> str:
  return "n/a" if not math.isfinite(x) else f"{x:.3g}"


def task_lines(run: DesignRun, rows: Sequence[dict[str, Any]], trade: Sequence[dict[str, Any]],
               inverse: Sequence[dict[str, Any]], task: str, numbers: dict[str, Any]
               ) -> list[str]:
  """One task's tables and findings; records its numbers."""
  c = run.config
  lines = [f"## {task}", ""]
  numbers[task] = {}
  for steps in lengths(run):
    these = rows_of(rows, task, steps)
    lines += [f"### {task}, {steps} steps", "",
              "| size | non-embedding params | total params | threshold (range) | seeds "
              "learning the highest tested | compute to learn (FLOPs) | background loss vs "
              "control (nats) | centre |", "|---|---:|---:|---|---:|---:|---:|---|"]
    for r in these:
      never = ""
      if r["never_learned"]:
        reach = ("design.max_frequency" if r["highest_tested"] >= c.design.max_frequency
                 else f"{r['highest_tested']:.3g}, the highest frequency tested")
        never = f" never learned up to {reach}"
      lines.append(f"| {r['size']} | {r['params']:,} | {r['total_params']:,} | {_range(r)}"
                   f"{never} | {r['seeds_learned_at_max']} of {r['seeds']} at "
                   f"{r['highest_tested']:.3g} | {_flops(r['compute_to_learn'])} | "
                   f"{fmt(r['background_loss_delta'])} | {r['center']:.3g} |")
    found = {r["size"]: key_threshold(run, (task, r["size"], steps)) for r in these}
    pairs = separation(found) if len(found) > 1 else []
    rises = [p for p in pairs if "rises" in p]
    slope, lo, hi, n = power_law(run, rows, task, steps)
    flips = [f"{r['size']} ({r['non_monotone_seeds']} of {r['seeds']} seeds; learned as low as "
             f"{r['lowest_learned']:.3g} against a threshold of {r['threshold']:.3g})"
             for r in these if r["non_monotone_seeds"]]
    lines += ["", "- " + ("; ".join(pairs) if pairs else "one size"),
              "- outcomes that flip with frequency (a seed learned a frequency below one it did "
              "not learn; the threshold is then the top of that band): " + (
                  "; ".join(flips) if flips else "none"),
              "- the needed frequency " + (
                  "is non-increasing in size wherever the ranges separate" if not rises
                  else "rises with size where the ranges separate: " + "; ".join(rises)),
              "- power law of the needed frequency against non-embedding parameters: " + (
                  f"exponent **{slope:.2f}** (90% bootstrap interval over seeds "
                  f"[{lo:.2f}, {hi:.2f}]), over {n} sizes" if math.isfinite(slope)
                  else f"not fitted ({n} size(s) with a threshold; it needs 3)"), ""]
    rel = [t for t in trade if t["task"] == task and t["steps"] == steps]
    if rel:
      lines += ["Upsampling against a larger model (each size at its needed frequency against "
                f"{rel[0]['reference']}, the largest size with a threshold, at its own):", ""]
      lines += [f"- {sentence(t)}." for t in rel] + [""]
    inv = [r for r in inverse if r["task"] == task and r["steps"] == steps]
    lines += ["Smallest size that learns a frequency (by the median threshold; by the lowest "
              "and the highest seed threshold):", "",
              "| frequency | smallest size | optimistic | conservative |", "|---:|---|---|---|"]
    lines += [f"| {r['frequency']:.3g} | {r['min_size'] or 'none'} | "
              f"{r['min_size_low'] or 'none'} | {r['min_size_high'] or 'none'} |" for r in inv]
    lines.append("")
    numbers[task][steps] = {"thresholds": {r["size"]: r["threshold"] for r in these},
                            "exponent": slope, "exponent_interval": [lo, hi],
                            "separation": pairs}
  if len(lengths(run)) > 1:
    lines += length_lines(run, rows, task)
  lines += [f"![mixture design, {task}]({figure_path(task)})", ""]
  return lines


def length_lines(run: DesignRun, rows: Sequence[dict[str, Any]], task: str) -> list[str]:
  """Per size, how the needed frequency and the compute to learn move with the run length."""
  runs = sorted({r["steps"] for r in rows if r["task"] == task})
  short, long_ = runs[0], runs[-1]
  lines = [f"Training length: {long_} against {short} steps ({long_ / short:g}x the compute "
           "per run):", ""]
  for size in dict.fromkeys(r["size"] for r in rows_of(rows, task, short)):
    a = next(r for r in rows if (r["task"], r["size"], r["steps"]) == (task, size, short))
    b = next(r for r in rows if (r["task"], r["size"], r["steps"]) == (task, size, long_))
    if math.isfinite(a["threshold"]) and math.isfinite(b["threshold"]):
      moved = (f"the needed frequency goes from {a['threshold']:.3g} to {b['threshold']:.3g} "
               f"({fmt(a['threshold'] / b['threshold'])} times lower), compute to learn "
               f"{_flops(a['compute_to_learn'])} -> {_flops(b['compute_to_learn'])} FLOPs")
    else:
      moved = f"threshold {_range(a)} at {short} steps, {_range(b)} at {long_}"
    lines.append(f"- {size}: {moved}")
  return lines + [""]


def write(run: DesignRun, trained: int, wall_s: float) -> dict[str, Any]:
  """Writes the three tables, the figures and summary.md; returns the headline numbers."""
  rows = design_rows(run)
  inverse = min_size_rows(run, rows)
  trade = tradeoff_rows(run, rows)
  if workdir.is_writer():
    (run.wd / FIGURES).mkdir(parents=True, exist_ok=True)
    tables.write_csv(run.wd / DESIGN_FILE, COLUMNS, rows)
    tables.write_csv(run.wd / MIN_SIZE_FILE, MIN_SIZE_COLUMNS, inverse)
    tables.write_csv(run.wd / TRADEOFF_FILE, TRADEOFF_COLUMNS, trade)
    for task in task_names(run):
      figure(run.wd / figure_path(task), run, rows, task)
  c = run.config
  models = len(run.outcomes)
  equivalent = grid_models(run, rows)
  sources = sorted({src for _, src in run.centers.values()})
  numbers: dict[str, Any] = {"rounds": run.rounds, "models": models,
                             "grid_models": equivalent, "trained_steps_this_invocation": trained,
                             "wall_s_this_invocation": wall_s}
  lines = [
      "# Mixture design: the injection frequency each size needs", "",
      f"Sizes {', '.join(dict.fromkeys(k[1] for k in run.keys))} (by non-embedding "
      f"parameters); tasks {', '.join(task_names(run))}; {', '.join(map(str, lengths(run)))} "
      f"steps of {c.train.batch_size or 'the ladder batch of'} rows of {c.data.seq_len} tokens; "
      f"seeds {run.seeds}; frequencies {c.injection.unit} ({c.injection.schedule}"
      f"{', gap ' + str(c.grid.gap[0]) if c.injection.schedule == 'bursts' else ''}), searched "
      f"in [{c.design.min_frequency:g}, {c.design.max_frequency:g}]. Learned: train "
      f"{c.learned.criterion} >= {c.learned.threshold}, the mean of the last "
      f"{c.learned.last_evals} evaluations (a diverged cell learns nothing).", "",
      f"First-round centres from {' and '.join(sources)}. {run.rounds} rounds of "
      f"{c.design.num_candidates} candidates per size; {models} models trained (controls "
      f"included), where a grid over the searched range at the search's final bracket ratio "
      f"would train {equivalent} ({fmt(equivalent / models)}x). This invocation trained "
      f"{trained} steps (summed over programs) in {wall_s:.0f} s.", ""]
  for task in task_names(run):
    lines += task_lines(run, rows, trade, inverse, task, numbers)
  lines += [f"Tables: [{DESIGN_FILE}]({DESIGN_FILE}), [{MIN_SIZE_FILE}]({MIN_SIZE_FILE}), "
            f"[{TRADEOFF_FILE}]({TRADEOFF_FILE}); every round's cells, metrics, injections and "
            "checkpoints under `rounds/`.", ""]
  numbers["headline"] = "; ".join(
      f"{task} at {steps} steps: " + ", ".join(
          f"{s} {t:.3g}" if math.isfinite(t) else f"{s} none"
          for s, t in numbers[task][steps]["thresholds"].items())
      for task in task_names(run) for steps in lengths(run))
  return write_summary(run.wd, [Section(lines, numbers, FILES), diverged_cells(run)])


def diverged_cells(run: DesignRun) -> Section:
  """summary.md's list of the cells, of every round, that diverged (none: no lines)."""
  rows = [dict(o, model=f"round {o['round']}: {o['task'] or 'control'}, {o['size']}, "
                        f"{o['steps']} steps, seed {o['seed']}, frequency {o['frequency']:.4g}")
          for o in run.outcomes]
  return diverged_section(rows, "model", lambda r: r["model"])
