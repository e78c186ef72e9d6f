"""The width x frequency picture of a grid run: the rare task's loss over width and frequency
(beside the closed form, when the family has one), per-task learning curves, and the summary's
opening lines and closing index of figures and tables.

One code path with and without a closed form: predictions, when there are any, add a panel to
the map, dotted optima to the curves, a number beside each measured one, and the critical width.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rare_tasks.core import workdir
from rare_tasks.core.plots import edges, plt, save, task_colors
from rare_tasks.core.report import Section
from rare_tasks.synthetic.report.results_view import GridResults, rare_grid

WIDTH_BY_FREQUENCY = "figures/width_by_frequency.png"
LEARNING_CURVES = "figures/learning_curves.png"
FILES = (WIDTH_BY_FREQUENCY, LEARNING_CURVES)
CAPTIONS = {WIDTH_BY_FREQUENCY: "width x frequency", LEARNING_CURVES: "learning curves"}


def applies(run: GridResults) -> bool:
  return True


def section(run: GridResults) -> Section:
  """Draws the map and the learning curves; returns the summary's opening lines."""
  config, task = run.config, run.task
  widths, freqs = run.widths, run.rare_frequencies
  rare = task.rare_tasks[0]
  measured = rare_grid(run.rows, rare, widths, freqs, task.loss_name)
  predicted = None if run.predictions is None else rare_grid(run.rows, rare, widths, freqs,
                                                             "predicted_fvu")
  theory, ref = task.theory, run.cells[0].values
  curve = None
  if theory is not None:
    fine = np.geomspace(freqs[0] / 2, min(freqs[-1] * 2, 0.999 / task.num_rare), 400)
    curve = (fine, np.array([theory.critical_width(ref, f) for f in fine]))
  averaged = run.averaged_over()
  width_by_frequency(run.figure("width_by_frequency.png"), widths, freqs, measured, predicted,
                     curve, config.learned.threshold, f"rare task {rare} of {config.task.name}, "
                     f"{config.train.steps} steps, {averaged}", task.loss_label)
  _learning_curves(run, freqs[len(freqs) // 2])
  diverged = sorted({r["cell"] for r in run.rows if np.isnan(r[task.loss_name])})
  lines = _header(run) + _rare_table(run, measured, predicted, averaged)
  if theory is not None:
    lines += ["", "Critical width of the rare task at each frequency: " + ", ".join(
        f"{f:g}: {theory.critical_width(ref, f)}" for f in freqs)]
  if diverged:
    lines += ["", f"Diverged (non-finite loss; counted as not learned): cells {diverged} "
              "(see results.csv `cell`)."]
  numbers = {"cells": len(run.cells), "trained_steps_this_invocation": run.trained_steps,
             "wall_s_this_invocation": run.wall_s, "diverged_cells": diverged,
             "averaged_over": averaged}
  return Section(lines + [""], numbers, FILES, CAPTIONS)


def _header(run: GridResults) -> list[str]:
  config, widths = run.config, run.widths
  t, m = config.train, config.model
  return [
      f"# Width x frequency study: {config.task.name}", "",
      f"{len(run.cells)} cells: widths {list(map(int, widths))} x rare frequencies "
      f"{[float(f) for f in run.rare_frequencies]} x seeds {run.seeds}; task `{config.task.name}` "
      f"{run.task.describe(run.cells[0].values)}; model `{m.name}` ({m.activation}, "
      f"{m.num_hidden_layers} extra layers); {t.optimizer} at {t.learning_rate} ({t.schedule}), "
      f"{t.steps} steps of batch {t.batch_size}.", "",
      f"This invocation: {run.trained_steps} steps trained (summed over groups), "
      f"{run.wall_s:.1f} s wall."]


def _rare_table(run: GridResults, measured: np.ndarray, predicted: np.ndarray | None,
                averaged: str) -> list[str]:
  label, learned = run.task.loss_label, run.config.learned.threshold
  freqs = run.rare_frequencies
  lines = ["", f"## Rare-task {label}, measured{'' if predicted is None else ' (predicted)'}, "
           f"{averaged}", "", f"Bold: learned ({label} <= {learned}).", "",
           "| width | " + " | ".join(f"f={f:g}" for f in freqs) + " |",
           "|---|" + "---|" * len(freqs)]
  for i, w in enumerate(run.widths):
    shown = []
    for j in range(len(freqs)):
      text = f"{measured[i, j]:.2f}"
      if predicted is not None:
        text += f" ({predicted[i, j]:.2f})"
      shown.append(f"**{text}**" if measured[i, j] <= learned else text)
    lines.append(f"| {int(w)} | " + " | ".join(shown) + " |")
  return lines


def index(sections: list[Section]) -> Section:
  """The summary's list of the figures and tables the given sections wrote, with their captions
  (and metrics.jsonl, which every run has)."""
  captions = {f: c for s in sections for f, c in s.captions.items()}
  captions[workdir.METRICS_FILE] = "every evaluation"
  lines = ["## Figures", ""]
  for f, caption in captions.items():
    if f.endswith(".png"):
      lines += [f"![{caption}]({f})", ""]
  tables = [f"`{f}` ({caption})" for f, caption in captions.items() if not f.endswith(".png")]
  return Section(lines + ["Tables: " + ", ".join(tables) + ".", ""])


def _learning_curves(run: GridResults, f_show: float) -> None:
  """Each task's headline loss against step for the narrowest, middle and widest width at rare
  frequency f_show (with the closed-form optimum, if any)."""
  widths, task = run.widths, run.task
  shown = sorted({widths[0], widths[len(widths) // 2], widths[-1]})
  curves = {}
  for w in shown:
    cell = run.cell_at(width=w, rare_frequency=f_show)
    recs = run.by_cell[cell.index]
    curves[int(w)] = {"steps": np.array([r["step"] for r in recs]),
                      "fvu": np.array([r[task.loss_name] for r in recs], dtype=float),
                      "predicted": (None if run.predictions is None
                                    else run.predictions[cell.index].fvu),
                      "label": f"rare freq {f_show:g}, seed {cell.values['seed']}"}
  learning_curves(run.figure("learning_curves.png"), curves, set(task.rare_tasks),
                  f"per-task {task.loss_label} during training", task.loss_label)


def width_by_frequency(path: Path, widths: np.ndarray, frequencies: np.ndarray,
                       measured: np.ndarray, predicted: np.ndarray | None,
                       critical_curve: tuple[np.ndarray, np.ndarray] | None,
                       learned_threshold: float, title: str, metric: str = "FVU") -> None:
  """Rare-task loss over (width, frequency), measured beside predicted (when there is a closed
  form), critical width drawn.

  measured, predicted: shape (len(widths), len(frequencies)); critical_curve: (frequencies,
  critical widths) on a fine grid.
  """
  panels = [(measured, "measured")]
  if predicted is not None:
    panels.append((predicted, "closed-form optimum"))
  fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 0.5, 4.5), sharey=True,
                           constrained_layout=True, squeeze=False)
  axes = axes[0]
  fx, fy = edges(frequencies), edges(widths)
  for ax, (data, name) in zip(axes, panels):
    mesh = ax.pcolormesh(fx, fy, data, cmap="viridis_r", vmin=0, vmax=1)
    for i, w in enumerate(widths):
      for j, f in enumerate(frequencies):
        value = data[i, j]
        ax.text(f, w, f"{value:.2f}", ha="center", va="center", fontsize=7,
                color="white" if value > 0.5 else "black",
                fontweight="bold" if value <= learned_threshold else "normal")
    if critical_curve is not None:
      cf, cw = critical_curve
      ax.step(cf, cw, where="post", color="red", lw=2,
              label="critical width (top rare feature kept)")
    ax.set_xscale("log")
    ax.set_yscale("log", base=2)
    ax.set_xlim(fx[0], fx[-1])
    ax.set_ylim(fy[0], fy[-1])
    ax.set_yticks(widths, [str(w) for w in widths])
    ax.set_xlabel("rare-task frequency")
    ax.set_title(f"rare-task {metric}, {name}")
  axes[0].set_ylabel("width N")
  if critical_curve is not None:
    axes[0].legend(loc="lower left", fontsize=8)
  fig.colorbar(mesh, ax=list(axes), label=f"{metric} (bold: learned, <= {learned_threshold})")
  fig.suptitle(title)
  save(fig, path, dpi=120)


def learning_curves(path: Path, curves: dict[int, dict[str, Any]], rare_tasks: set[int],
                    title: str, metric: str = "FVU") -> None:
  """Per-task loss against step, one panel per width.

  curves: width -> {"steps": (T,), "fvu": (T, K), "predicted": (K,) or None, "label": str}.
  """
  widths = sorted(curves)
  fig, axes = plt.subplots(1, len(widths), figsize=(4.2 * len(widths), 3.8), sharey=True,
                           constrained_layout=True, squeeze=False)
  for ax, w in zip(axes[0], widths):
    c = curves[w]
    num_tasks = c["fvu"].shape[1]
    colors = task_colors(num_tasks)
    for k in range(num_tasks):
      rare = k in rare_tasks
      ax.plot(c["steps"], c["fvu"][:, k], color="red" if rare else colors[k],
              lw=2.2 if rare else 1.0, label=f"rare task {k}" if rare else None)
      if c["predicted"] is not None:
        ax.axhline(c["predicted"][k], color="red" if rare else colors[k], ls=":", lw=0.8)
    ax.set_title(f"width {w}: {c['label']}")
    ax.set_xlabel("step")
    ax.set_ylim(-0.02, 1.1)
  has_prediction = any(curves[w]["predicted"] is not None for w in widths)
  axes[0][0].set_ylabel(f"{metric} (dotted: closed-form optimum)" if has_prediction else metric)
  axes[0][0].legend(fontsize=8)
  fig.suptitle(title)
  save(fig, path)
