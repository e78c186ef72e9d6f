"""figures/task_loss_<task>.png (paper Fig. 6a): the train-instance LABEL loss against step, a
line per frequency at the grid's first gap (the control dashed), one panel per size, at the
grid's longest run length."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections

from rare_tasks.core import plots, workdir
from rare_tasks.core.report import Section
from rare_tasks.lm.grid import Cell
from rare_tasks.lm.report.injection_view import FIGURES, InjectionRun

FILES = (FIGURES,)


def applies(run: InjectionRun) -> bool:
  return True


def section(run: InjectionRun, task: str) -> Section:
  """Draws the task's loss curves per frequency; the Section lists the figure."""
  name = run.figure("task_loss", task)
  if workdir.is_writer():
    curves_figure(run.wd / name, run.config, longest(run), run.histories, task, "frequency")
  return Section([], {}, (name,))


def longest(run: InjectionRun) -> dict[str, list[Cell]]:
  """Each size's cells at the grid's longest run length."""
  n = max(run.lengths)
  return {s: [x for x in cs if x.steps == n] for s, cs in run.cells.items()}


def curves_figure(path: Path, c: ml_collections.ConfigDict, cells: dict[str, list[Cell]],
                  hist: dict[int, list[dict[str, Any]]], task: str, by: str) -> None:
  """The train-instance loss against step: per size a panel, a line per frequency (by =
  "frequency", at the first gap) or per gap at each frequency (by = "gap")."""
  sizes = list(cells)
  freqs = sorted(set(c.grid.frequency), reverse=True)
  cols = 1 if by == "frequency" else len(freqs)
  fig, axes = plots.plt.subplots(len(sizes), cols, figsize=(4.4 * cols, 2.8 * len(sizes)),
                                 squeeze=False, sharey=True)
  for i, size in enumerate(sizes):
    for j in range(cols):
      ax = axes[i, j]
      lines = panel_lines(c, cells[size], task, by, freqs[j] if by == "gap" else None)
      colors = plots.task_colors(max(len(lines), 1))
      for k, (label, cell) in enumerate(lines):
        h = hist.get(cell.index, [])
        ax.plot([r["step"] for r in h], [r[f"{task}_train_loss"] for r in h],
                "--" if cell.is_control else "-", color="gray" if cell.is_control
                else colors[k], label=label, lw=1.2)
      ax.set_yscale("log")
      ax.set_title(f"{size}" + (f", frequency {freqs[j]:g}" if by == "gap" else ""),
                   fontsize=9)
      ax.set_xlabel("step")
      ax.legend(fontsize=6)
    axes[i, 0].set_ylabel("LABEL loss, train (nats)")
  fig.suptitle(f"{task}: task loss during pretraining", fontsize=10)
  plots.tight(fig)
  plots.save(fig, path)


def panel_lines(c: ml_collections.ConfigDict, size_cells: list[Cell], task: str, by: str,
                freq: float | None) -> list[tuple[str, Cell]]:
  """(label, cell) of the lines of one panel: the first seed's cells that inject the task, by
  falling frequency at the first gap (by = "frequency") or by rising gap at frequency `freq`
  (by = "gap"), the control last."""
  seed, gap0 = c.grid.seed[0], c.grid.gap[0]
  mine = [x for x in size_cells if x.seed == seed and (x.is_control or task in x.tasks)]
  if by == "frequency":
    out = [(f"{x.frequency:g}", x) for x in sorted(mine, key=lambda x: -x.frequency)
           if not x.is_control and x.gap == gap0]
  else:
    out = [(f"gap {x.gap}", x) for x in sorted(mine, key=lambda x: x.gap)
           if not x.is_control and x.frequency == freq]
  return out + [("control (0)", x) for x in mine if x.is_control]
