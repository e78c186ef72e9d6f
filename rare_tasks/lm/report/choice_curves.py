"""figures/choice_<task>.png: the choice accuracy on pairs never injected in either order
(test_unseen) against step, seed means, a line per frequency at the grid's first gap (the
control grey), one panel per size and run length, with the count baseline drawn as the
reference level a model must pass to have learned more of the order than counting gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rare_tasks.core import plots, workdir
from rare_tasks.core.report import Section
from rare_tasks.lm.report.injection_view import FIGURES, InjectionRun

FILES = (FIGURES,)
COLUMN = "{task}_test_unseen_choice_accuracy"


def applies(run: InjectionRun) -> bool:
  return any(COLUMN.format(task=t.name) in r for t in run.task_list for r in run.records)


def section(run: InjectionRun, task: str) -> Section:
  """Draws the task's choice-accuracy curves; the Section lists the figure."""
  name = run.figure("choice", task)
  if workdir.is_writer():
    choice_figure(run.wd / name, run, task)
  return Section([], {}, (name,))


def curves(run: InjectionRun, task: str, size: str, steps: int
           ) -> list[tuple[float, np.ndarray, np.ndarray]]:
  """(frequency, steps (E,), seed-mean choice accuracy (E,)) of each frequency of one size and
  length at the first gap, by falling frequency, the control (0) last."""
  means = run.history_means(task, size, steps, COLUMN.format(task=task))
  return [(f, *means[f]) for f in sorted(means, key=lambda f: (f == 0, -f))]


def choice_figure(path: Path, run: InjectionRun, task: str) -> None:
  """A panel per (size, length): choice accuracy on unseen pairs against step."""
  panels = [(s, n) for n in run.lengths for s in run.sizes]
  base = run.baseline(task, "test_unseen")
  fig, axes = plots.plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0),
                                 squeeze=False, sharey=True)
  for ax, (size, steps) in zip(axes[0], panels):
    lines = curves(run, task, size, steps)
    colors = plots.task_colors(max(len(lines), 1))
    for k, (f, x, y) in enumerate(lines):
      ax.plot(x, y, "-", color="gray" if f == 0 else colors[k], lw=1.2,
              label="control (0)" if f == 0 else f"{f:g}")
    ax.axhline(base, color="k", ls="--", lw=0.9, label="count baseline")
    ax.set_ylim(0, 1.02)
    ax.set_title(size + (f", {steps} steps" if len(run.lengths) > 1 else ""), fontsize=9)
    ax.set_xlabel("step")
    ax.legend(fontsize=6)
  axes[0, 0].set_ylabel("choice accuracy, unseen pairs")
  fig.suptitle(f"{task}: the order beyond the training pairs (seed means)", fontsize=10)
  plots.tight(fig)
  plots.save(fig, path)
