"""figures/heatmap_<task>.png (paper Fig. 5): size x frequency, the train-instance loss, train
accuracy and test accuracy, seed means, at the grid's first gap (the control at frequency 0)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colors

from rare_tasks.core import plots, workdir
from rare_tasks.core.report import Section
from rare_tasks.lm.report.injection_view import FIGURES, InjectionRun, seed_mean

FILES = (FIGURES,)


def applies(run: InjectionRun) -> bool:
  return True


def section(run: InjectionRun, task: str) -> Section:
  """Draws the task's heatmaps; the Section lists the figure."""
  c = run.config
  name = run.figure("heatmap", task)
  if workdir.is_writer():
    freqs = [0.0] + sorted(set(c.grid.frequency))  # the control first
    heatmap_figure(run.wd / name, run.rows, task, c.grid.gap[0], run.sizes, freqs,
                   c.injection.unit)
  return Section([], {}, (name,))


def heatmap_figure(path: Path, rows: list[dict[str, Any]], task: str, gap: int,
                   sizes: Sequence[str], freqs: Sequence[float], unit: str) -> None:
  """Paper Fig. 5: size x frequency panels of train loss, train and test accuracy."""
  panels = (("train_loss", "LABEL loss, train instances (nats, log colour)", "viridis_r", None),
            ("train_accuracy", "accuracy, train instances", "magma", (0, 1)),
            ("test_accuracy", "accuracy, held-out test instances", "magma", (0, 1)))
  fig, axes = plots.plt.subplots(1, 3, figsize=(4.2 * 3, 0.6 * len(sizes) + 2.4))
  for ax, (column, title, cmap, limits) in zip(axes, panels):
    values = seed_mean(rows, task, gap, column, sizes, freqs)
    # The control's loss (~ln V) would wash out the losses that matter: log colours for loss.
    norm = (colors.LogNorm() if limits is None and np.nanmin(values) > 0
            else colors.Normalize(*(limits or (None, None))))
    im = ax.imshow(values, cmap=cmap, aspect="auto", origin="lower", norm=norm)
    for (i, j), v in np.ndenumerate(values):
      if np.isfinite(v):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="white" if (limits and v < 0.5) else "black")
    ax.set_xticks(range(len(freqs)), [f"{f:.3g}" if f else "0\n(control)" for f in freqs],
                  fontsize=7, rotation=30)
    ax.set_yticks(range(len(sizes)), sizes, fontsize=8)
    ax.set_xlabel(f"injection frequency ({unit.replace('_', ' ')})")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
  axes[0].set_ylabel("model size")
  fig.suptitle(f"{task}: what each size learns at each frequency (gap {gap}, seed means)",
               fontsize=10)
  fig.tight_layout()
  plots.save(fig, path)
