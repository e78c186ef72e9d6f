"""learning_order.csv and its section: which tasks each cell learns, and when, against the order
the task frequencies predict and, for a family with a closed form, the utility order
(rare_tasks.analysis.learning_order). Written for every grid run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rare_tasks.analysis import learning_order
from rare_tasks.core import tables
from rare_tasks.core.plots import plt, save
from rare_tasks.core.report import Section, pct
from rare_tasks.core.tables import number
from rare_tasks.synthetic.grid import Cell
from rare_tasks.synthetic.report.results_view import GridResults, cell_key

LEARNING_ORDER_FILE = "learning_order.csv"
FIGURE = "figures/learning_order.png"
FILES = (LEARNING_ORDER_FILE, FIGURE)


def applies(run: GridResults) -> bool:
  return True


def columns(run: GridResults) -> tuple[str, ...]:
  """learning_order.csv's columns: the utility prediction's only with a closed form."""
  closed_form = run.task.theory is not None
  return (("width", "rare_frequency", "seed", "task", "task_frequency",
           run.task.complexity_name) + (("top_utility",) if closed_form else ())
          + ("learned_step",) + (("predicted_learned_width",) if closed_form else ())
          + ("is_rare", "cell"))


def loss_matrix(task, recs: list[dict[str, Any]]) -> np.ndarray:
  """(T, K) headline loss of a cell's records: the exact FVU where known (linear models of a
  family with theory), else the held-out estimate."""
  exact = [r.get("population_fvu") or [None] * task.num_tasks for r in recs]
  return np.array([[number(p) if p is not None else number(f)
                    for p, f in zip(e, r[task.loss_name])] for e, r in zip(exact, recs)])


def _cell_rows(run: GridResults, c: Cell) -> tuple[list[dict], tuple, tuple]:
  """A cell's rows, and its pair agreements with the utility and the frequency order (the
  utility's is (NaN, 0) without a closed form)."""
  task, theory = run.task, run.task.theory
  recs = run.by_cell[c.index]
  frequencies = c.task_frequencies
  measured = learning_order.first_learned_step([r["step"] for r in recs],
                                               loss_matrix(task, recs),
                                               run.config.learned.threshold)
  complexity = task.complexity(c.values)
  rows = [{**cell_key(c), "task": k, "task_frequency": float(frequencies[k]),
           task.complexity_name: float(complexity[k]), "learned_step": measured[k],
           "is_rare": k in task.rare_tasks} for k in range(task.num_tasks)]
  by_utility: tuple[float, int] = (float("nan"), 0)
  if theory is not None:
    predicted = theory.learned_width(c, run.config.learned.threshold)
    for row, top, width in zip(rows, theory.top_utility(c), predicted):
      row.update(top_utility=float(top), predicted_learned_width=int(width))
    by_utility = learning_order.pair_agreement(measured, predicted)
  return rows, by_utility, learning_order.pair_agreement(measured, -frequencies)


def _pooled(agreements: list[tuple[float, int]]) -> tuple[float, int]:
  counted = [a for a in agreements if a[1]]
  total = sum(n for _, n in counted)
  return sum(a * n for a, n in counted) / max(total, 1), total


def section(run: GridResults) -> Section:
  """Writes learning_order.csv; the section shows the utility order where tasks differ in
  complexity (a closed form), and the frequency order of a family without one."""
  rows, by_utility, by_frequency = [], [], []
  for c in run.cells:
    r, u, f = _cell_rows(run, c)
    rows += r
    by_utility.append(u)
    by_frequency.append(f)
  tables.write_csv(run.wd / LEARNING_ORDER_FILE, columns(run), rows)
  summary = {"utility_pair_agreement": _pooled(by_utility),
             "frequency_pair_agreement": _pooled(by_frequency)}
  numbers = {"learning_order": summary}
  if run.task.theory is None:
    return Section(_frequency_lines(run, rows, summary), numbers, (LEARNING_ORDER_FILE,))
  if _complexities_differ(run):
    return Section(_utility_lines(run, rows, summary), numbers, FILES)
  return Section([], numbers, (LEARNING_ORDER_FILE,))


def _complexities_differ(run: GridResults) -> bool:
  """Whether some cell has per-task complexities that differ (a complexity study)."""
  return any(len(set(run.task.complexity(c.values))) > 1 for c in run.cells)


def _utility_lines(run: GridResults, rows: list[dict], summary: dict) -> list[str]:
  config = run.config
  widest = max(c.values["width"] for c in run.cells)
  cell = run.cell_at(width=widest)
  sel = [r for r in rows if r["cell"] == cell.index]
  recs = run.by_cell[cell.index]
  figure(run.figure("learning_order.png"), np.array([r["step"] for r in recs]),
         loss_matrix(run.task, recs), sel, config.learned.threshold,
         f"width {widest}, seed {cell.values['seed']}")
  ua, un = summary["utility_pair_agreement"]
  fa, fn = summary["frequency_pair_agreement"]
  final = config.train.steps
  lines = ["## Learning order", "",
           f"Pairs of learned tasks (learned at different steps) ordered as predicted, pooled "
           f"over cells: by utility (the closed-form width at which the optimum learns the task) "
           f"{pct(ua)} of {un} pairs; by frequency alone {pct(fa)} of {fn}.", "",
           f"Tasks learned by step {final} (FVU <= {config.learned.threshold}), measured in every "
           "seed (predicted by the closed form):", ""]
  for w in sorted({c.values["width"] for c in run.cells}):
    at_w = [r for r in rows if r["width"] == w]
    seeds = sorted({r["seed"] for r in at_w})
    learned = sorted({r["task"] for r in at_w if all(
        q["learned_step"] <= final for q in at_w if q["task"] == r["task"])})
    predicted = sorted({r["task"] for r in at_w if r["predicted_learned_width"] <= w})
    lines.append(f"- width {w}: {learned} ({predicted}) over seeds {seeds}")
  lines += ["", f"Width {widest}, seed {cell.values['seed']}, tasks in measured order:", "",
            "| task | frequency | beta | top utility | predicted learned width | learned step |",
            "|---|---|---|---|---|---|"]
  for r in sorted(sel, key=lambda r: (np.nan_to_num(r["learned_step"], nan=np.inf),
                                      r["predicted_learned_width"])):
    step = "never" if np.isnan(r["learned_step"]) else str(int(r["learned_step"]))
    lines.append(f"| {r['task']}{' (rare)' if r['is_rare'] else ''} | "
                 f"{r['task_frequency']:.3g} | {r['beta']:g} | {r['top_utility']:.3g} | "
                 f"{r['predicted_learned_width']} | {step} |")
  return lines + ["", f"![learning order]({FIGURE})", ""]


def _frequency_lines(run: GridResults, rows: list[dict], summary: dict) -> list[str]:
  """Learning order of a family without a closed form: against frequency, per width."""
  task = run.task
  fa, fn = summary["frequency_pair_agreement"]
  lines = ["## Learning order", "",
           f"Pairs of learned tasks (learned at different evaluations) in which the more frequent "
           f"task was learned first, pooled over cells: {pct(fa)} of {fn}.", "",
           f"First evaluation step at which each task's {task.loss_name} is <= "
           f"{run.config.learned.threshold} (tasks by decreasing frequency; mean over the cells "
           "where it is learned, with their count):", ""]
  widths = sorted({c.values["width"] for c in run.cells})
  order = sorted(range(task.num_tasks), key=lambda k: -next(
      r["task_frequency"] for r in rows if r["task"] == k))
  lines += ["| width | " + " | ".join(f"task {k}" for k in order) + " |",
            "|---|" + "---|" * len(order)]
  for w in widths:
    out = []
    for k in order:
      steps = [r["learned_step"] for r in rows if r["width"] == w and r["task"] == k]
      hit = [s for s in steps if np.isfinite(s)]
      out.append(f"{np.mean(hit):.0f} ({len(hit)}/{len(steps)})" if hit else "never")
    lines.append(f"| {w} | " + " | ".join(out) + " |")
  return lines + [""]


def figure(path: Path, steps: np.ndarray, fvu: np.ndarray, rows: list[dict[str, Any]],
           learned_threshold: float, title: str) -> None:
  """Per-task FVU against step (colour: frequency rank, line width: complexity) beside the
  measured learned step against the closed-form learned width."""
  fig, (a0, a1) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
  by_task = {r["task"]: r for r in rows}
  freqs = np.array([by_task[k]["task_frequency"] for k in range(fvu.shape[1])])
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(freqs)))[np.argsort(np.argsort(-freqs))]
  for k in range(fvu.shape[1]):
    r = by_task[k]
    a0.plot(steps, fvu[:, k], color=colors[k], lw=0.8 + 0.5 * r["beta"],
            label=f"task {k}: pi {r['task_frequency']:.3g}, beta {r['beta']:g}")
  a0.axhline(learned_threshold, color="k", ls=":", lw=0.8)
  a0.set_xlabel("step")
  a0.set_ylabel("FVU")
  a0.set_ylim(-0.02, 1.05)
  a0.legend(fontsize=6, ncol=2)
  a0.set_title(f"per-task FVU ({title}); dotted: learned threshold", fontsize=9)
  for k in range(fvu.shape[1]):
    r = by_task[k]
    if np.isfinite(r["learned_step"]):
      a1.scatter(r["predicted_learned_width"], r["learned_step"], color=colors[k], s=30)
      a1.annotate(str(k), (r["predicted_learned_width"], r["learned_step"]), fontsize=8,
                  xytext=(3, 3), textcoords="offset points")
  a1.set_xlabel("closed-form width at which the optimum learns the task (utility rank)")
  a1.set_ylabel("measured first learned step")
  a1.set_title("learning order: measured against utility (colour: frequency rank)", fontsize=9)
  save(fig, path)
