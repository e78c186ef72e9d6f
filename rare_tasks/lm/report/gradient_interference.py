"""The gradient decomposition (paper Fig. 9), for a run with mechanism.gradients: gradients.csv,
figures/gradients_<task>.png and the cosines per size at and between injection steps beside the
paper's and the null.

Rows read: the decomposition of each measured update of every cell on each task's direction
(`rare_tasks.lm.gradient_log`). "At an injection" is an update that carries the cell's
instances; "between" any other measured update after the first injection. The null is
cos(g_nt, r) for a random direction on the same support: its spread, about 1/sqrt(support
dimension), is what a cosine of that size means by chance. The sizes are compared on |cos(g_nt,
g_r)| less the null's mean |cos| (the excess over chance), per seed: the larger size's is lower
"by more than the null explains" when every seed of it lies below every seed of the smaller.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from rare_tasks.core import plots, tables, workdir
from rare_tasks.core.report import Section, fmt
from rare_tasks.lm.gradients import COSINES, NORMS
from rare_tasks.lm.report.injection_view import FIGURES, InjectionRun

TABLE = "gradients.csv"
FILES = (TABLE, FIGURES)
COLUMNS = ("size", "frequency", "gap", "seed", "steps", "cell", "step", "injection_step",
           "task", "injected", "top_k", "support_dim", *COSINES, *NORMS)
# The paper's cosines (mean +- sd), to read ours beside.
PAPER = ("the paper: cos(g_nt, g_r) 0.10 +- 0.09 at 20M against 7.6e-5 +- 0.02 at 1B; "
         "cos(g, g_r) at injection steps 0.08 +- 0.02 at 1B and 0.04 +- 0.04 at 300M")


def applies(run: InjectionRun) -> bool:
  return bool(run.gradients)


def rows(run: InjectionRun) -> list[dict[str, Any]]:
  """gradients.csv's rows: one per cell, measured update, task and support size."""
  cells = run.cells_by_index
  out = []
  for r in run.gradients:
    cell = cells.get(r["cell"])
    if cell is None:
      continue
    for t in run.task_list:
      if f"{t.name}_cos_g_gr" not in r:
        continue
      for k, top_k in enumerate(r["top_k"]):
        row = {"size": cell.size, "frequency": cell.frequency, "gap": cell.gap,
               "seed": cell.seed, "steps": cell.steps, "cell": cell.index, "step": r["step"],
               "injection_step": r["injection_step"], "task": t.name,
               "injected": t.name in cell.tasks, "top_k": top_k,
               "support_dim": r["support_dim"][k]}
        for value in (*COSINES, *NORMS):
          row[value] = tables.number(r[f"{t.name}_{value}"][k])
        out.append(row)
  return out


def _spread(values: list[float]) -> tuple[float, float, int]:
  v = np.asarray([x for x in values if math.isfinite(x)], float)
  return (float(v.mean()), float(v.std()), len(v)) if len(v) else (math.nan, math.nan, 0)


def _pm(values: list[float]) -> str:
  mean, sd, n = _spread(values)
  return "n/a" if n == 0 else f"{mean:.3g} +- {sd:.2g} ({n})"


def phases(run: InjectionRun, table: list[dict[str, Any]], task: str, size: str, top_k: float
           ) -> dict[str, list[dict[str, Any]]]:
  """The rows of one size and support on the task's direction: "at" and "between" injection
  steps (cells injecting the task, after the withholding phase), "control" (the cells that
  inject nothing, from the first burst's update on), and "injecting" (every measured update of the
  injecting cells)."""
  after = run.config.injection.withhold_steps
  mine = [r for r in table if r["task"] == task and r["size"] == size and r["top_k"] == top_k
          and r["steps"] == max(run.lengths)]
  inj = [r for r in mine if r["injected"]]
  return {"at": [r for r in inj if r["injection_step"]],
          "between": [r for r in inj if not r["injection_step"] and r["step"] > after],
          "control": [r for r in mine if r["frequency"] == 0 and r["step"] >= after],
          "injecting": inj}


def excess_by_seed(rows_at: list[dict[str, Any]]) -> dict[int, tuple[float, float]]:
  """Per seed, over its rows: (mean |cos(g_nt, g_r)| less the null's mean |cos|, mean
  |cos(g_nt, g_r)| in units of the null's sd)."""
  out = {}
  for seed in sorted({r["seed"] for r in rows_at}):
    mine = [r for r in rows_at if r["seed"] == seed]
    cos = float(np.nanmean([abs(r["cos_gnt_gr"]) for r in mine]))
    null = np.array([r["null_cos_gnt_gr"] for r in mine], float)
    sd = float(np.nanstd(null))
    out[seed] = (cos - float(np.nanmean(np.abs(null))), cos / sd if sd > 0 else math.nan)
  return out


def verdict(small: dict[int, tuple[float, float]], large: dict[int, tuple[float, float]],
            names: tuple[str, str]) -> str:
  """Whether the larger size's |cos(g_nt, g_r)| at injection steps is below the smaller's by
  more than its null explains (the excess over the null's mean |cos|, every seed of the larger
  below every seed of the smaller), with the same in units of each size's null sd."""
  if not small or not large:
    return "Not measured at injection steps for both sizes."
  s = np.array([v[0] for v in small.values()])
  lg = np.array([v[0] for v in large.values()])
  sz = np.array([v[1] for v in small.values()])
  lz = np.array([v[1] for v in large.values()])
  head = (f"|cos(g_nt, g_r)| at injection steps, less the null's mean |cos|: {names[0]} "
          f"{fmt(s.mean())} (seeds {fmt(s.min())}..{fmt(s.max())}), {names[1]} "
          f"{fmt(lg.mean())} (seeds {fmt(lg.min())}..{fmt(lg.max())}): ")
  if lg.max() < s.min():
    said = f"{names[1]}'s is lower by more than the null explains, in every seed."
  elif lg.mean() < s.mean():
    said = f"{names[1]}'s is lower on average, but the seeds overlap."
  else:
    said = f"{names[1]}'s is not lower."
  return (head + said + f" In units of each size's null sd, |cos(g_nt, g_r)| is "
          f"{fmt(sz.mean())} at {names[0]} and {fmt(lz.mean())} at {names[1]} (how far each "
          "is from chance in its own dimension).")


def section(run: InjectionRun, task: str) -> Section:
  """Writes gradients.csv (every task, once) and the task's figure; the cosines per size."""
  table = rows(run)
  if workdir.is_writer() and task == run.task_list[0].name:  # every task's rows, once
    tables.write_csv(run.wd / TABLE, COLUMNS, table)
  top_k = run.config.mechanism.top_k
  name = run.figure("gradients", task)
  if workdir.is_writer():
    figure(run.wd / name, run, table, task, top_k[0])
  lines = ["", f"Gradient decomposition on the {task} direction (support: the top "
           f"{top_k[0]:g} of the first layer's MLP neurons by |g_r|; mean +- sd (measurements) "
           "over the cells that inject the task; " + PAPER + "):", "",
           "| size | support dim | cos(g, g_r) at | cos(g_t, g_r) at | cos(g_nt, g_r) at | "
           "cos(g_nt, g_r) between | cos(update, g_r) at | control cos(g_nt, g_r) | "
           "null cos | 1/sqrt(dim) |", "|---|---:|---|---|---|---|---|---|---|---:|"]
  numbers: dict[str, Any] = {}
  for size in run.sizes:
    ph = phases(run, table, task, size, top_k[0])
    dims = {r["support_dim"] for r in ph["injecting"] + ph["control"]}
    dim = max(dims) if dims else 0
    lines.append(
        f"| {size} | {dim} | {_pm([r['cos_g_gr'] for r in ph['at']])} | "
        f"{_pm([r['cos_gt_gr'] for r in ph['at']])} | "
        f"{_pm([r['cos_gnt_gr'] for r in ph['at']])} | "
        f"{_pm([r['cos_gnt_gr'] for r in ph['between']])} | "
        f"{_pm([r['cos_update_gr'] for r in ph['at']])} | "
        f"{_pm([r['cos_gnt_gr'] for r in ph['control']])} | "
        f"{_pm([r['null_cos_gnt_gr'] for r in ph['injecting']])} | "
        f"{fmt(1 / math.sqrt(dim)) if dim else 'n/a'} |")
    numbers[size] = {k: _spread([r[v] for r in ph[p]])[:2] for k, v, p in (
        ("cos_g_gr_at", "cos_g_gr", "at"), ("cos_gnt_gr_at", "cos_gnt_gr", "at"),
        ("cos_gnt_gr_between", "cos_gnt_gr", "between"),
        ("cos_update_gr_at", "cos_update_gr", "at"),
        ("control_cos_gnt_gr", "cos_gnt_gr", "control"),
        ("null_cos_gnt_gr", "null_cos_gnt_gr", "injecting"))}
    numbers[size]["excess_by_seed"] = excess_by_seed(ph["at"])
  lines += ["", "cos(update, g_r) is negative when the update lowers the task loss (parameters "
            "move along minus the gradient)."]
  if len(top_k) > 1:
    lines += ["", "The support's size (mean cos(g_nt, g_r) at injection steps, and the null's "
              "sd):", "", "| size | " + " | ".join(f"top {k:g}" for k in top_k) + " |",
              "|---|" + "---|" * len(top_k)]
    for size in run.sizes:
      cells = []
      for k in top_k:
        ph = phases(run, table, task, size, k)
        mean = _spread([r["cos_gnt_gr"] for r in ph["at"]])[0]
        null_sd = _spread([r["null_cos_gnt_gr"] for r in ph["injecting"]])[1]
        cells.append(f"{fmt(mean)} (null sd {fmt(null_sd)})")
      lines.append(f"| {size} | " + " | ".join(cells) + " |")
  if len(run.sizes) > 1:
    small, large = run.sizes[0], run.sizes[-1]
    lines += ["", verdict(numbers[small]["excess_by_seed"], numbers[large]["excess_by_seed"],
                          (small, large))]
  return Section(lines, {f"{task}_gradients": numbers}, (TABLE, name))


def binned(points: list[tuple[int, float]], edges: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(bin centres, means, sds) of (step, value) points in the bins between `edges`, bins
  without a finite point left out."""
  steps = np.array([p[0] for p in points], float)
  values = np.array([p[1] for p in points], float)
  out = []
  for lo, hi in zip(edges[:-1], edges[1:]):
    v = values[(steps > lo) & (steps <= hi) & np.isfinite(values)]
    if len(v):
      out.append(((lo + hi) / 2, v.mean(), v.std()))
  return tuple(np.array(c, float) for c in zip(*out)) if out else (np.zeros(0),) * 3


def figure(path: Path, run: InjectionRun, table: list[dict[str, Any]], task: str,
           top_k: float) -> None:
  """A panel per size, against update in 20 bins: the mean (+-1 sd band) of cos(g_nt, g_r) and
  cos(g, g_r) of the injecting cells at injection steps, cos(g_nt, g_r) between them, the
  control's cos(g_nt, g_r), and the null's +-2 sd band."""
  fig, axes = plots.plt.subplots(1, len(run.sizes), figsize=(4.2 * len(run.sizes), 3.2),
                                 squeeze=False, sharey=True)
  withhold = run.config.injection.withhold_steps
  edges = np.linspace(0, max(run.lengths), 21)
  for ax, size in zip(axes[0], run.sizes):
    ph = phases(run, table, task, size, top_k)
    null = [r["null_cos_gnt_gr"] for r in ph["injecting"]]
    if null:
      sd = float(np.nanstd(null))
      ax.axhspan(-2 * sd, 2 * sd, color="0.85", label="null +-2 sd")
    if withhold:
      ax.axvspan(0, withhold, color="0.95", zorder=0)
    for rows_, key, label, color in (
        (ph["at"], "cos_g_gr", "cos(g, g_r), injection steps", "C0"),
        (ph["at"], "cos_gnt_gr", "cos(g_nt, g_r), injection steps", "C3"),
        ([r for r in ph["injecting"] if not r["injection_step"]], "cos_gnt_gr",
         "cos(g_nt, g_r), other steps", "C1"),
        (ph["control"], "cos_gnt_gr", "control cos(g_nt, g_r)", "gray")):
      x, mean, sd = binned([(r["step"], r[key]) for r in rows_], edges)
      if len(x):
        ax.plot(x, mean, "-o", ms=2.5, lw=1.1, color=color, label=label)
        ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.12, lw=0)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_title(size, fontsize=9)
    ax.set_xlabel("update")
    ax.legend(fontsize=5.5, loc="upper right")
  axes[0, 0].set_ylabel(f"cosine on the top {top_k:g} neurons")
  fig.suptitle(f"{task}: the batch gradient against the task direction (means +-1 sd; shaded: "
               "withholding)", fontsize=9)
  plots.tight(fig)
  plots.save(fig, path)
