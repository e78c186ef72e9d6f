"""Which tasks each width learns, from the most frequent down (families without a closed form:
there the measurement is the whole story), and the final loss of every task against its
frequency."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rare_tasks.core.plots import plt, save
from rare_tasks.core.report import Section
from rare_tasks.synthetic.report.results_view import GridResults

LOSS_BY_TASK_FREQUENCY = "figures/loss_by_task_frequency.png"
FILES = (LOSS_BY_TASK_FREQUENCY,)


def applies(run: GridResults) -> bool:
  return run.predictions is None


def section(run: GridResults) -> Section:
  task, config = run.task, run.config
  metric, learned_threshold = task.loss_name, config.learned.threshold
  widths = run.widths
  f_show = run.rare_frequencies[len(run.rare_frequencies) // 2]
  at_f = [r for r in run.rows if r["rare_frequency"] == f_show]
  frequencies = run.cell_at(rare_frequency=f_show).task_frequencies
  final = {int(w): np.array([np.mean([r[metric] for r in at_f if r["width"] == w
                                      and r["task"] == k]) for k in range(task.num_tasks)])
           for w in widths}
  averaged = run.averaged_over()
  loss_by_task_frequency(run.figure("loss_by_task_frequency.png"), frequencies, final,
                         learned_threshold, f"final per-task {metric} at rare frequency {f_show:g} "
                         f"({averaged})", metric)
  learned_count = {int(w): float(np.mean([
      sum(r["learned"] for r in run.rows if r["cell"] == c.index)
      for c in run.cells if c.values["width"] == w])) for w in widths}
  order = np.argsort(-frequencies)
  lines = [f"## Tasks learned by width (rare frequency {f_show:g})", "",
           "Tasks in order of frequency, most frequent first; per width the mean final "
           f"{metric} of each task ({averaged}), bold where learned:", "",
           "| width | learned per cell | " + " | ".join(f"task {k}" for k in order) + " |",
           "|---|---|" + "---|" * task.num_tasks]
  for w in widths:
    values = final[int(w)][order]
    lines.append(f"| {int(w)} | {learned_count[int(w)]:.1f} | " + " | ".join(
        f"**{v:.2f}**" if v <= learned_threshold else f"{v:.2f}" for v in values) + " |")
  numbers = {"tasks_learned_by_width": learned_count,
             "headline": "tasks learned per width (mean over cells): " + ", ".join(
                 f"{w}: {n:.1f}" for w, n in learned_count.items())}
  return Section(lines + [""], numbers, FILES,
                 {LOSS_BY_TASK_FREQUENCY: "loss by task frequency"})


def loss_by_task_frequency(path: Path, frequencies: np.ndarray, losses: dict[int, np.ndarray],
                           learned_threshold: float, title: str, metric: str) -> None:
  """Final per-task loss against the task's frequency, one line per width: tasks are learned
  from the most frequent down, and a wider model reaches rarer ones.

  frequencies: (K,); losses: width -> (K,).
  """
  order = np.argsort(-np.asarray(frequencies))
  fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(losses)))
  for color, w in zip(colors, sorted(losses)):
    ax.plot(np.asarray(frequencies)[order], np.asarray(losses[w])[order], marker="o", ms=3,
            color=color, label=f"width {w}")
  ax.axhline(learned_threshold, color="k", ls=":", lw=0.8, label="learned threshold")
  ax.set_xscale("log")
  ax.invert_xaxis()
  ax.set_xlabel("task frequency (most frequent on the left)")
  ax.set_ylabel(metric)
  ax.set_ylim(-0.02, 1.1)
  ax.legend(fontsize=8)
  ax.set_title(title, fontsize=9)
  save(fig, path)
