"""figures/heatmap_<task>.png (paper Fig. 5): size x frequency, seed means at the grid's first
gap (the control at frequency 0) of the train accuracy and train choice accuracy (each the mean
of the last learned.last_evals evaluations, the two scores a learned criterion may read), the
choice accuracy on pairs never injected in either order with the count baseline in its title,
and the format rate at the last evaluation. With several run lengths, a row per size and length."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colors

from rare_tasks.core import plots, workdir
from rare_tasks.core.report import Section, fmt
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
    lines = [(s, n) for n in run.lengths for s in run.sizes]
    heatmap_figure(run.wd / name, run.rows, task, c.grid.gap[0], lines, freqs,
                   c.injection.unit, run.baseline(task, "test_unseen"), c.learned.last_evals,
                   len(run.lengths) > 1)
  return Section([], {}, (name,))


def heatmap_figure(path: Path, rows: list[dict[str, Any]], task: str, gap: int,
                   lines: Sequence[tuple[str, int]], freqs: Sequence[float], unit: str,
                   baseline: float, last_evals: int, label_steps: bool) -> None:
  """Paper Fig. 5: (size, length) x frequency panels of the train accuracy, train choice
  accuracy, unseen-pair choice accuracy and format rate."""
  panels = (("mean_train_accuracy", "accuracy (argmax of all tokens), train"),
            ("mean_train_choice_accuracy", "choice accuracy, train"),
            ("mean_test_unseen_choice_accuracy",
             f"choice accuracy, unseen pairs\n(count baseline {fmt(baseline)})"),
            ("format_rate", "format rate, train (last evaluation)"))
  fig, axes = plots.plt.subplots(1, len(panels), figsize=(3.8 * len(panels),
                                                          0.6 * len(lines) + 2.6))
  for ax, (column, title) in zip(axes, panels):
    values = np.concatenate([seed_mean(rows, task, gap, column, [s], freqs, n)
                             for s, n in lines])
    im = ax.imshow(values, cmap="magma", aspect="auto", origin="lower",
                   norm=colors.Normalize(0, 1))
    for (i, j), v in np.ndenumerate(values):
      if np.isfinite(v):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="white" if v < 0.5 else "black")
    ax.set_xticks(range(len(freqs)), [f"{f:.3g}" if f else "0\n(control)" for f in freqs],
                  fontsize=7, rotation=30)
    ax.set_yticks(range(len(lines)), [f"{s} {n}" if label_steps else s for s, n in lines],
                  fontsize=8)
    ax.set_xlabel(f"injection frequency ({unit.replace('_', ' ')})")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
  axes[0].set_ylabel("model size" + (" and steps" if label_steps else ""))
  fig.suptitle(f"{task}: what each size learns at each frequency (gap {gap}, seed means of the "
               f"last {last_evals} evaluations)", fontsize=10)
  plots.tight(fig)
  plots.save(fig, path)
