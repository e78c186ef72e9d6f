"""The tasks' features in the residual stream (paper Fig. 7), for a run with mechanism.probes:
probes.csv, figures/probes_<task>.png and how feature presence goes with generalisation.

Feature presence: for comparison, the order feature (the cross-validated R^2 of the hidden order
from the first block's output, `rare_tasks.lm.probes`); for addition, the Fourier modes summed
over the blocks. It is set against the choice accuracy on pairs never injected in either order
(test_unseen) at the same evaluation: Pearson's and Spearman's correlation over every
evaluation of the cells that inject the task, per size and pooled.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from rare_tasks.core import plots, tables, workdir
from rare_tasks.core.report import Section, fmt
from rare_tasks.lm.report.injection_view import FIGURES, InjectionRun

TABLE = "probes.csv"
FILES = (TABLE, FIGURES)
COLUMNS = ("size", "frequency", "gap", "seed", "steps", "cell", "step", "task", "layer",
           "order_r2", "fourier_modes")
ACCURACY = "{task}_test_unseen_choice_accuracy"


def applies(run: InjectionRun) -> bool:
  return any(f"{t.name}_order_r2" in r for t in run.task_list for r in run.records)


def presence_key(task: str) -> tuple[str, str]:
  """The record field that says how present a task's feature is, and its name."""
  if task == "addition":
    return f"{task}_fourier_modes", "Fourier modes (summed over blocks)"
  return f"{task}_order_r2", "order feature R^2 (first block)"


def rows(run: InjectionRun) -> list[dict[str, Any]]:
  """probes.csv's rows: one per cell, evaluation, task and layer (0: the embedding)."""
  cells = run.cells_by_index
  out = []
  for r in sorted(run.records, key=lambda r: (r["cell"], r["step"])):
    cell = cells.get(r["cell"])
    for t in run.task_list:
      r2, modes = r.get(f"{t.name}_order_r2_by_layer"), r.get(f"{t.name}_fourier_modes_by_layer")
      if cell is None or r2 is None or modes is None:
        continue
      for layer, (a, b) in enumerate(zip(r2, modes)):
        out.append({"size": cell.size, "frequency": cell.frequency, "gap": cell.gap,
                    "seed": cell.seed, "steps": cell.steps, "cell": cell.index,
                    "step": r["step"], "task": t.name, "layer": layer,
                    "order_r2": tables.number(a), "fourier_modes": b})
  return out


def pairs(run: InjectionRun, task: str, size: str | None = None) -> np.ndarray:
  """(n, 2): (feature presence, unseen choice accuracy) at every evaluation after step 0 of the
  cells injecting the task (of one size when given), both finite."""
  key, _ = presence_key(task)
  out = []
  for cell in run.cells_by_index.values():
    if task not in cell.tasks or (size is not None and cell.size != size):
      continue
    for r in run.histories.get(cell.index, []):
      x, y = tables.number(r.get(key)), tables.number(r.get(ACCURACY.format(task=task)))
      if math.isfinite(x) and math.isfinite(y):
        out.append((x, y))
  return np.array(out, float).reshape(-1, 2)


def _ranks(v: np.ndarray) -> np.ndarray:
  """Average ranks (ties share their mean rank)."""
  order = np.argsort(v, kind="stable")
  ranks = np.empty(len(v))
  ranks[order] = np.arange(len(v), dtype=float)
  for value in np.unique(v):
    tied = v == value
    ranks[tied] = ranks[tied].mean()
  return ranks


def correlations(xy: np.ndarray) -> tuple[float, float, int]:
  """(Pearson r, Spearman rho, n) of the pairs; NaN with fewer than 3 pairs or a constant
  column."""
  n = len(xy)
  if n < 3 or np.ptp(xy[:, 0]) == 0 or np.ptp(xy[:, 1]) == 0:
    return math.nan, math.nan, n
  pearson = float(np.corrcoef(xy[:, 0], xy[:, 1])[0, 1])
  spearman = float(np.corrcoef(_ranks(xy[:, 0]), _ranks(xy[:, 1]))[0, 1])
  return pearson, spearman, n


def section(run: InjectionRun, task: str) -> Section:
  """Writes probes.csv (every task) and the task's figure; the final presence per size and
  frequency and its correlation with unseen-pair choice accuracy."""
  if workdir.is_writer() and task == run.task_list[0].name:  # every task's rows, once
    tables.write_csv(run.wd / TABLE, COLUMNS, rows(run))
  name = run.figure("probes", task)
  if workdir.is_writer():
    figure(run.wd / name, run, task)
  key, label = presence_key(task)
  steps = max(run.lengths)
  freqs = sorted({c.frequency for cs in run.cells.values() for c in cs
                  if task in c.tasks or c.is_control}, reverse=True)
  lines = ["", f"{task}: {label} and the choice accuracy on unseen pairs at the last "
           "evaluation (seed means; 0 = the control):", "",
           "| size | " + " | ".join(f"{f:g}" for f in freqs) + " |",
           "|---|" + "---:|" * len(freqs)]
  for size in run.sizes:
    feature = run.history_means(task, size, steps, key)
    accuracy = run.history_means(task, size, steps, ACCURACY.format(task=task))
    cells = []
    for f in freqs:
      x = feature.get(f, (np.zeros(0), np.zeros(0)))[1]
      y = accuracy.get(f, (np.zeros(0), np.zeros(0)))[1]
      cells.append(f"{fmt(x[-1]) if len(x) else 'n/a'} / {fmt(y[-1]) if len(y) else 'n/a'}")
    lines.append(f"| {size} | " + " | ".join(cells) + " |")
  numbers: dict[str, Any] = {}
  parts = []
  for size in [*run.sizes, None]:
    r, rho, n = correlations(pairs(run, task, size))
    numbers[size or "pooled"] = {"pearson": r, "spearman": rho, "n": n}
    parts.append(f"{size or 'pooled'} r = {fmt(r)}, rho = {fmt(rho)} (n = {n})")
  lines += ["", f"Feature presence against unseen-pair choice accuracy, every evaluation of the "
            f"injecting cells: {'; '.join(parts)}."]
  return Section(lines, {f"{task}_probes": numbers}, (TABLE, name))


def figure(path: Path, run: InjectionRun, task: str) -> None:
  """A panel per size: presence against step, a line per frequency (seed means, the control
  grey); a last panel: presence against unseen-pair choice accuracy, a colour per size."""
  key, label = presence_key(task)
  steps = max(run.lengths)
  n = len(run.sizes) + 1
  fig, axes = plots.plt.subplots(1, n, figsize=(3.6 * n, 3.0), squeeze=False)
  for ax, size in zip(axes[0], run.sizes):
    means = run.history_means(task, size, steps, key)
    freqs = sorted(means, key=lambda f: (f == 0, -f))
    colors = plots.task_colors(max(len(freqs), 1))
    for k, f in enumerate(freqs):
      ax.plot(*means[f], "-", lw=1.2, color="gray" if f == 0 else colors[k],
              label="control (0)" if f == 0 else f"{f:g}")
    ax.set_title(size, fontsize=9)
    ax.set_xlabel("step")
    ax.legend(fontsize=6)
  axes[0, 0].set_ylabel(label, fontsize=8)
  ax = axes[0, -1]
  for k, size in enumerate(run.sizes):
    xy = pairs(run, task, size)
    if len(xy):
      ax.plot(xy[:, 0], xy[:, 1], ".", ms=3, color=f"C{k}", label=size)
  ax.set_xlabel(label, fontsize=8)
  ax.set_ylabel("choice accuracy, unseen pairs", fontsize=8)
  ax.legend(fontsize=6)
  fig.suptitle(f"{task}: the feature in the residual stream and generalisation", fontsize=10)
  plots.tight(fig)
  plots.save(fig, path)
