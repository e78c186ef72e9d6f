"""The report of a mixture design study: mixture_design.csv (the frequency each width needs),
min_width.csv (the smallest width that learns a frequency), figures/mixture_design.png and
summary.md, with the closed form beside each measurement for a family that has one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from rare_tasks.analysis import frequency_search
from rare_tasks.core import tables
from rare_tasks.core.plots import plt, save, width_axis
from rare_tasks.core.report import Section, write_summary
from rare_tasks.synthetic.tasks import TaskFamily

DESIGN_FILE = "mixture_design.csv"
MIN_WIDTH_FILE = "min_width.csv"
FIGURE = "figures/mixture_design.png"
FILES = (DESIGN_FILE, MIN_WIDTH_FILE, FIGURE)
COLUMNS = ("width", "min_frequency", "min_frequency_low", "min_frequency_high",
           "predicted_min_frequency", "resolution", "seeds_learned", "num_seeds", "below_range",
           "never_learned", "searched_low", "searched_high")
INVERSE_COLUMNS = ("frequency", "min_width", "min_width_low", "min_width_high",
                   "predicted_min_width")


def width_rows(results: dict[int, frequency_search.KeyResult], predicted: dict[int, float],
               num_seeds: int) -> list[dict[str, Any]]:
  """mixture_design.csv's rows: one per width, from the search's results."""
  rows = []
  for w, r in sorted(results.items()):
    rows.append({"width": w, "min_frequency": r.min_frequency, "min_frequency_low": r.low,
                 "min_frequency_high": r.high, "predicted_min_frequency": predicted[w],
                 "resolution": r.resolution,
                 "seeds_learned": int(np.isfinite(r.thresholds).sum()), "num_seeds": num_seeds,
                 "below_range": r.below_range, "never_learned": r.never_learned,
                 "searched_low": r.searched[0], "searched_high": r.searched[1]})
  return rows


def inverse(config: ml_collections.ConfigDict, task: TaskFamily, values: dict[str, Any],
            rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """min_width.csv rows: for each target frequency, the smallest width of the list that learns
  it (and its interval over seeds), beside the closed form's smallest width."""
  targets = config.design.target_frequencies
  if targets is None:
    found = [r[k] for r in rows for k in ("min_frequency_low", "min_frequency_high")
             if np.isfinite(r[k])]
    lo, hi = ((min(found), max(found)) if found
              else (config.design.min_frequency, config.design.max_frequency))
    if hi <= lo * 1.5:  # one threshold: a range around it
      lo, hi = lo / 2, min(hi * 2, config.design.max_frequency)
    targets = np.geomspace(lo, hi, 6)
  targets = sorted({float(f) for f in targets})
  widths = [r["width"] for r in rows]
  mid, low, high = frequency_search.smallest_width(
      widths, [r["min_frequency"] for r in rows], [r["min_frequency_low"] for r in rows],
      [r["min_frequency_high"] for r in rows], targets)
  theory = task.theory
  return [{"frequency": f, "min_width": mid[i], "min_width_low": low[i],
           "min_width_high": high[i],
           "predicted_min_width": (theory.min_width(values, f, config.learned.threshold)
                                   if theory is not None else float("nan"))}
          for i, f in enumerate(targets)]


def write(config: ml_collections.ConfigDict, wd: Path, task: TaskFamily, values: dict[str, Any],
          rows: list[dict[str, Any]], num_rounds: int, trained: int,
          wall_s: float, diverged: Section | None = None) -> dict[str, Any]:
  """Writes both tables, the figure and summary.md (with `diverged`, the list of the candidates
  that diverged, when given); returns the headline numbers."""
  tables.write_csv(wd / DESIGN_FILE, COLUMNS, rows)
  inverse_rows = inverse(config, task, values, rows)
  tables.write_csv(wd / MIN_WIDTH_FILE, INVERSE_COLUMNS, inverse_rows)
  widths = np.array([r["width"] for r in rows], float)
  measured = np.array([r["min_frequency"] for r in rows])
  predicted = np.array([r["predicted_min_frequency"] for r in rows])
  slope = frequency_search.log_slope(widths, measured)
  predicted_slope = frequency_search.log_slope(widths, predicted)
  fine = None
  if task.theory is not None:
    grid = np.unique(np.geomspace(widths.min(), widths.max(), 60).round().astype(int))
    fine = (grid, np.array([task.theory.min_frequency({**values, "width": int(w)},
                                                      config.learned.threshold,
                                                      config.design.max_frequency)
                            for w in grid]))
  figure(wd / FIGURE, widths, measured, np.array([r["min_frequency_low"] for r in rows]),
         np.array([r["min_frequency_high"] for r in rows]), fine, slope,
         f"{config.task.name}: rare task learned (loss <= {config.learned.threshold}) within "
         f"{config.train.steps} steps")
  ratio = measured / predicted
  finite = measured[np.isfinite(measured)]
  numbers = {"slope": slope, "predicted_slope": predicted_slope,
             "ratio_to_predicted": [None if not np.isfinite(x) else float(x) for x in ratio],
             "monotone": bool(np.all(np.diff(finite) <= 0)) if finite.size > 1 else None,
             "rounds": num_rounds, "trained_steps_this_invocation": trained,
             "wall_s_this_invocation": wall_s,
             "headline": (f"frequency needed ~ width^{slope:.2f}" if np.isfinite(slope)
                          else "fewer than 2 widths learned the rare task: no slope") + (
                 f" (closed form {predicted_slope:.2f})" if np.isfinite(predicted_slope) else "")}
  lines = _lines(config, task, rows, inverse_rows, ratio, numbers)
  return write_summary(wd, [Section(lines, numbers, FILES), *([diverged] if diverged else [])])


def _lines(config: ml_collections.ConfigDict, task: TaskFamily, rows: list[dict[str, Any]],
           inverse_rows: list[dict[str, Any]], ratio: np.ndarray,
           numbers: dict[str, Any]) -> list[str]:
  t = config.train
  slope, predicted_slope = numbers["slope"], numbers["predicted_slope"]
  lines = [
      "# Mixture design: the rare-task frequency each width needs", "",
      f"Task `{config.task.name}` ({task}); model `{config.model.name}` "
      f"({config.model.activation}); {t.optimizer} at {t.learning_rate} ({t.schedule}), "
      f"{t.steps} steps of batch {t.batch_size}; learned: every rare task's {task.loss_name} <= "
      f"{config.learned.threshold} at the end. {numbers['rounds']} search rounds; this invocation "
      f"trained {numbers['trained_steps_this_invocation']} steps (summed over ensembles) in "
      f"{numbers['wall_s_this_invocation']:.1f} s.", "",
      f"Fitted slope of log(min frequency) against log(width): **{slope:.3f}**"
      + (f" (closed form: {predicted_slope:.3f})." if np.isfinite(predicted_slope) else "."),
      f"Measured minimum falls monotonically with width: {numbers['monotone']}.", "",
      "| width | min frequency (median over seeds) | seeds' range | closed form | measured / "
      "closed form | resolution |", "|---|---|---|---|---|---|"]
  for r, x in zip(rows, ratio):
    lines.append(f"| {r['width']} | {_g(r['min_frequency'])} | {_g(r['min_frequency_low'])} .. "
                 f"{_g(r['min_frequency_high'])} | {_g(r['predicted_min_frequency'])} | "
                 f"{_g(x)} | {_g(r['resolution'])} |")
  lines += ["", "Smallest width (of the list) that learns a frequency (interval over seeds), "
            "beside the closed form's:", "",
            "| frequency | min width | interval | closed form |", "|---|---|---|---|"]
  for r in inverse_rows:
    lines.append(f"| {r['frequency']:.3g} | {_g(r['min_width'])} | {_g(r['min_width_low'])} .. "
                 f"{_g(r['min_width_high'])} | {_g(r['predicted_min_width'])} |")
  return lines + ["", f"![mixture design]({FIGURE})", "",
                  "Tables: `mixture_design.csv`, `min_width.csv`; every round's cells, metrics "
                  "and checkpoints under `rounds/`.", ""]


def _g(x: float) -> str:
  return "n/a" if x is None or not np.isfinite(x) else f"{x:.3g}"


def figure(path: Path, widths: np.ndarray, measured: np.ndarray, low: np.ndarray,
           high: np.ndarray, predicted: tuple[np.ndarray, np.ndarray] | None, slope: float,
           title: str) -> None:
  """Frequency a width needs, log-log: measured median with its interval over seeds, the
  fitted power law, and the closed form on a fine width grid (when there is one).

  widths, measured, low, high: (W,); predicted: (widths, frequencies) on a fine grid.
  """
  fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
  ok = np.isfinite(measured)
  lo = np.where(np.isfinite(low), low, measured)
  hi = np.where(np.isfinite(high), high, measured)
  # exp(median(log)) of one seed differs from it by rounding: clip the bars at zero.
  ax.errorbar(widths[ok], measured[ok], yerr=[np.maximum(measured[ok] - lo[ok], 0),
                                              np.maximum(hi[ok] - measured[ok], 0)],
              fmt="o", color="C0", capsize=3, label="measured (median; range over seeds)")
  if ok.sum() >= 2 and np.isfinite(slope):
    intercept = np.mean(np.log(measured[ok]) - slope * np.log(widths[ok]))
    ax.plot(widths, np.exp(intercept) * widths ** slope, color="C0", ls="--", lw=1,
            label=f"fit: slope {slope:.2f}")
  if predicted is not None:
    ax.step(predicted[0], predicted[1], where="post", color="red", lw=1.5,
            label="closed-form critical frequency")
  width_axis(ax, widths)
  ax.set_yscale("log")
  ax.set_ylabel("smallest rare-task frequency learned")
  ax.legend(fontsize=8)
  ax.set_title(title, fontsize=9)
  save(fig, path)
