"""allocation.csv and its figure: how a model's last hidden layer is divided among the tasks
(rare_tasks.analysis.allocation), per cell and evaluation (measure.allocation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rare_tasks.core import tables
from rare_tasks.core.plots import plt, save, task_colors, width_axis
from rare_tasks.core.report import Section, fmt
from rare_tasks.core.tables import number
from rare_tasks.synthetic.report.results_view import GridResults, cell_key

ALLOCATION_FILE = "allocation.csv"
FIGURE = "figures/allocation.png"
FILES = (ALLOCATION_FILE, FIGURE)
COLUMNS = ("width", "rare_frequency", "seed", "step", "task", "effective_neurons",
           "dominant_neurons", "is_rare", "gap", "cell")


def applies(run: GridResults) -> bool:
  return run.config.measure.allocation


def section(run: GridResults) -> Section:
  task = run.task
  rare = set(task.rare_tasks)
  rows = []
  for c in run.cells:
    for r in run.by_cell[c.index]:
      for k in range(task.num_tasks):
        rows.append({**cell_key(c), "step": r["step"], "task": k, "is_rare": k in rare,
                     "effective_neurons": number(r["effective_neurons"][k]),
                     "dominant_neurons": number(r["dominant_neurons"][k])})
  tables.write_csv(run.wd / ALLOCATION_FILE, COLUMNS, rows)
  steps = run.config.train.steps
  final = [r for r in rows if r["step"] == steps]
  widths = sorted({r["width"] for r in final})
  freqs = sorted({r["rare_frequency"] for r in final})
  f_show = freqs[len(freqs) // 2]
  mean = tables.mean_by([r for r in final if r["rare_frequency"] == f_show], ("width", "task"),
                        "effective_neurons")
  effective = np.array([[mean[(w, k)] for k in range(task.num_tasks)] for w in widths])
  ref = run.cell_at(rare_frequency=f_show)
  crit = None if run.predictions is None else run.predictions[ref.index].critical_width
  averaged = run.averaged_over()
  figure(run.figure("allocation.png"), np.array(widths), effective, crit, sorted(rare),
         f"effective neurons per task at step {steps} (rare frequency {f_show:g}, {averaged})")
  r0 = task.rare_tasks[0]

  def crit_of(k: int) -> str:
    return "" if crit is None else f", critical width {int(crit[k])} (of the first such cell)"

  lines = ["## Neuron allocation", "",
           f"Effective neurons (sum of shares) of rare task {r0} at step {steps}, rare frequency "
           f"{f_show:g} ({averaged}){crit_of(r0)}: " +
           ", ".join(f"width {w}: {fmt(mean[(w, r0)])}" for w in widths) + ".",
           f"Most frequent task 0{crit_of(0)}: " +
           ", ".join(f"width {w}: {fmt(mean[(w, 0)])}" for w in widths) + ".", "",
           f"![allocation]({FIGURE})", ""]
  return Section(lines, {}, FILES)


def figure(path: Path, widths: np.ndarray, effective: np.ndarray,
           critical_width: np.ndarray | None, rare: list[int], title: str) -> None:
  """Effective neurons per task against width: effective (W, K); critical_width (K,) or None."""
  fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
  colors = task_colors(effective.shape[1])
  for k in range(effective.shape[1]):
    is_rare = k in rare
    ax.plot(widths, effective[:, k], marker="o", ms=3, lw=2.2 if is_rare else 1.0,
            color="red" if is_rare else colors[k], label=f"rare task {k}" if is_rare else None)
    if is_rare and critical_width is not None:
      ax.axvline(critical_width[k], color="red", ls=":", lw=1,
                 label=f"critical width of task {k} ({int(critical_width[k])})")
  width_axis(ax, widths)
  ax.set_yscale("symlog", linthresh=0.1)
  ax.set_ylim(bottom=0)
  ax.set_ylabel("effective neurons (sum of shares)")
  ax.legend(fontsize=8)
  ax.set_title(title, fontsize=9)
  save(fig, path)
