"""Retention of each injection (paper Fig. 8), for a run with mechanism.retention: retention.csv,
figures/retention_<task>.png and the effectivity and retainability per size.

The signal: each cell's task loss on the traced train instances after every update
(`rare_tasks.lm.task_trace`). Per burst of its instances (`rare_tasks.analysis.retention`, on a
falling signal): the effectivity, the drop from just before the burst to the lowest loss within
mechanism.effectivity_window updates (0: until the next burst); the retainability, the fraction
of that drop still held mechanism.retention_lag updates after the lowest point (0: just before the
next burst); a half-life where the loss climbs back. Beside them, the same statistics over
burst-free windows of the withholding phase (the baseline: what training alone does to the
task loss over as many updates) and over the same windows of the control cell of the same seed,
which never sees an instance.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from rare_tasks import injection
from rare_tasks.analysis import retention as bursts_of
from rare_tasks.core import plots, tables, workdir
from rare_tasks.core.report import Section, fmt
from rare_tasks.lm import grid
from rare_tasks.lm.report.injection_view import FIGURES, InjectionRun
from rare_tasks.lm.task_trace import member_trace

TABLE = "retention.csv"
FILES = (TABLE, FIGURES)
COLUMNS = ("size", "frequency", "gap", "seed", "steps", "cell", "task", "injection", "step",
           "loss_before", "effectivity", "retainability", "half_life", "baseline_gain",
           "baseline_retainability", "control_gain", "control_retainability")


def applies(run: InjectionRun) -> bool:
  return any(r.get("trace_first") is not None for r in run.records)


def _settings(run: InjectionRun) -> dict[str, Any]:
  m = run.config.mechanism
  return {"window": m.effectivity_window or None, "lag": m.retention_lag or None,
          "falling": True}


def burst_updates(run: InjectionRun, cell: grid.Cell) -> np.ndarray:
  """The updates that carry the cell's instances (a burst whose share rounds to none is not
  one)."""
  plan = grid.injection_of(cell, run.config, run.info["sizes"][cell.size]["tokens_per_step"]
                           // run.config.data.seq_len)
  counts = injection.counts_per_update(0, cell.steps, plan.withhold_steps, plan.gap, plan.rate)
  return np.flatnonzero(counts > 0).astype(np.int64)


def _control(run: InjectionRun, cell: grid.Cell) -> grid.Cell | None:
  return next((c for c in run.cells[cell.size] if c.is_control and c.seed == cell.seed
               and c.steps == cell.steps), None)


def cell_rows(run: InjectionRun, cell: grid.Cell, task: str) -> list[dict[str, Any]]:
  """retention.csv's rows of one cell injecting the task in bursts: one per burst."""
  settings = _settings(run)
  signal = member_trace(run.histories.get(cell.index, []), task, cell.steps)
  updates = burst_updates(run, cell)
  if len(updates) == 0 or not np.isfinite(signal[1:]).any():
    return []
  found = bursts_of.burst_metrics(signal, updates, **settings)
  # Baseline windows as long as a burst's (its spacing: gap x the bursts per instance-carrying
  # burst when a burst's share can round to none), tiled back from the withholding phase's end.
  spacing = int(np.diff(updates).min()) if len(updates) > 1 else cell.gap
  base = bursts_of.baseline_metrics(signal, run.config.injection.withhold_steps, spacing,
                                    **settings)
  control = _control(run, cell)
  ctrl = {}
  if control is not None:
    trace = member_trace(run.histories.get(control.index, []), task, cell.steps)
    ctrl = {r["burst"]: r for r in bursts_of.burst_metrics(trace, updates, **settings)}
  out = []
  for r in found:
    c = ctrl.get(r["burst"], {})
    out.append({"size": cell.size, "frequency": cell.frequency, "gap": cell.gap,
                "seed": cell.seed, "steps": cell.steps, "cell": cell.index, "task": task,
                "injection": r["burst"], "step": r["update"], "loss_before": r["before"],
                "effectivity": r["gain"], "retainability": r["retained_fraction"],
                "half_life": r["half_life"], "baseline_gain": base["median_gain"],
                "baseline_retainability": base["median_retained_fraction"],
                "control_gain": c.get("gain", math.nan),
                "control_retainability": c.get("retained_fraction", math.nan)})
  return out


def rows(run: InjectionRun) -> list[dict[str, Any]]:
  """retention.csv's rows: every burst of every cell that injects in bursts (gap >= 2)."""
  return [row for t in run.task_list for cell in run.cells_by_index.values()
          if t.name in cell.tasks and cell.gap >= 2 for row in cell_rows(run, cell, t.name)]


def _median_iqr(values: list[float]) -> str:
  v = np.asarray([x for x in values if math.isfinite(x)], float)
  if not len(v):
    return "n/a"
  q1, q2, q3 = np.percentile(v, [25, 50, 75])
  return f"{q2:.3g} [{q1:.3g}, {q3:.3g}]"


def _median(values: list[float]) -> float:
  v = np.asarray([x for x in values if math.isfinite(x)], float)
  return float(np.median(v)) if len(v) else math.nan


def seed_medians(table: list[dict[str, Any]], column: str) -> dict[int, float]:
  """Per seed, the median of a column over its bursts."""
  return {s: _median([r[column] for r in table if r["seed"] == s])
          for s in sorted({r["seed"] for r in table})}


def section(run: InjectionRun, task: str) -> Section:
  """Writes retention.csv (every task) and the task's figure; the statistics per size and
  frequency, and the smallest size against the largest."""
  table = rows(run)
  if workdir.is_writer() and task == run.task_list[0].name:  # every task's rows, once
    tables.write_csv(run.wd / TABLE, COLUMNS, table)
  name = run.figure("retention", task)
  if workdir.is_writer():
    figure(run.wd / name, run, table, task)
  mine = [r for r in table if r["task"] == task and r["steps"] == max(run.lengths)]
  m = run.config.mechanism
  window = f"{m.effectivity_window} updates" if m.effectivity_window else "until the next burst"
  lag = (f"{m.retention_lag} updates after the lowest point" if m.retention_lag
         else "just before the next burst")
  lines = ["", f"Retention of each {task} burst (the task loss on {m.retention_instances} "
           f"train instances at most; effectivity: the drop {window}; retainability: the share "
           f"of it held {lag}; median [quartiles] over bursts and seeds; baseline: the same "
           "over burst-free windows of the withholding phase; control: the same windows of the "
           "cell that injects nothing):", "",
           "| size | frequency | gap | bursts | effectivity | baseline | control | "
           "retainability | control retainability | half-life (updates) |",
           "|---|---:|---:|---:|---|---:|---:|---|---:|---:|"]
  numbers: dict[str, Any] = {}
  for key in sorted({(r["size"], r["frequency"], r["gap"]) for r in mine},
                    key=lambda k: (run.sizes.index(k[0]), -k[1], k[2])):
    group = [r for r in mine if (r["size"], r["frequency"], r["gap"]) == key]
    lines.append(
        f"| {key[0]} | {key[1]:g} | {key[2]} | {len(group)} | "
        f"{_median_iqr([r['effectivity'] for r in group])} | "
        f"{fmt(_median([r['baseline_gain'] for r in group]))} | "
        f"{fmt(_median([r['control_gain'] for r in group]))} | "
        f"{_median_iqr([r['retainability'] for r in group])} | "
        f"{fmt(_median([r['control_retainability'] for r in group]))} | "
        f"{fmt(_median([r['half_life'] for r in group]))} |")
    numbers[f"{key[0]} f={key[1]:g} g={key[2]}"] = {
        "bursts": len(group), "effectivity": _median([r["effectivity"] for r in group]),
        "retainability": _median([r["retainability"] for r in group]),
        "baseline_gain": _median([r["baseline_gain"] for r in group]),
        "control_gain": _median([r["control_gain"] for r in group])}
  lines += compare_sizes(run, mine)
  return Section(lines, {f"{task}_retention": numbers}, (TABLE, name))


def compare_sizes(run: InjectionRun, mine: list[dict[str, Any]]) -> list[str]:
  """At each frequency and gap both have, the largest size's retainability (seed medians)
  against the smallest's."""
  if len(run.sizes) < 2 or not mine:
    return []
  lines: list[str] = []
  small, large = run.sizes[0], run.sizes[-1]
  keys = sorted({(r["frequency"], r["gap"]) for r in mine if r["size"] == small}
                & {(r["frequency"], r["gap"]) for r in mine if r["size"] == large})
  for f, gap in keys:
    s = seed_medians([r for r in mine if r["size"] == small and r["frequency"] == f
                      and r["gap"] == gap], "retainability")
    lg = seed_medians([r for r in mine if r["size"] == large and r["frequency"] == f
                       and r["gap"] == gap], "retainability")
    sv, lv = np.array(list(s.values())), np.array(list(lg.values()))
    if not (np.isfinite(sv).any() and np.isfinite(lv).any()):
      continue
    if np.nanmin(lv) > np.nanmax(sv):
      said = "higher in every seed"
    elif np.nanmean(lv) > np.nanmean(sv):
      said = "higher on average, the seeds overlapping"
    else:
      said = "not higher"
    at = f"frequency {f:g}" + (f", gap {gap}" if len({k[1] for k in keys}) > 1 else "")
    lines += ["", f"At {at}, {large}'s retainability (seed medians "
              f"{', '.join(fmt(v) for v in lv)}) against {small}'s "
              f"({', '.join(fmt(v) for v in sv)}): {said}."]
  return lines


def figure(path: Path, run: InjectionRun, table: list[dict[str, Any]], task: str) -> None:
  """A panel per size: the task loss around a burst, relative to its level just before (median
  over bursts and seeds), a line per frequency, the control over the same windows grey."""
  fig, axes = plots.plt.subplots(1, len(run.sizes), figsize=(3.8 * len(run.sizes), 3.0),
                                 squeeze=False, sharey=True)
  steps = max(run.lengths)
  for ax, size in zip(axes[0], run.sizes):
    cells = [c for c in run.cells[size] if task in c.tasks and c.gap >= 2 and c.steps == steps]
    keys = sorted({(c.frequency, c.gap) for c in cells}, key=lambda k: (-k[0], k[1]))
    colors = plots.task_colors(max(len(keys), 1))
    several = len({g for _, g in keys}) > 1
    for k, (f, gap) in enumerate(keys):
      group = [c for c in cells if (c.frequency, c.gap) == (f, gap)]
      offsets = np.arange(-(gap // 2), gap + 1)
      name = f"{f:g}" + (f" g{gap}" if several else "")
      for who, color, label in (("cell", colors[k], name), ("control", "gray", None)):
        windows = []
        for cell in group:
          source = cell if who == "cell" else _control(run, cell)
          if source is None:
            continue
          signal = member_trace(run.histories.get(source.index, []), task, steps)
          for b in burst_updates(run, cell):
            at = b + offsets
            if at[0] >= 1 and at[-1] <= steps:
              windows.append(signal[at] - signal[b])
        if windows:
          median = np.nanmedian(np.array(windows), axis=0)
          mine = [r for r in table if r["size"] == size and r["frequency"] == f
                  and r["gap"] == gap and r["task"] == task]
          eff = [r["effectivity"] for r in mine]
          ret = [r["retainability"] for r in mine]
          text = (f"{label}: eff {fmt(_median(eff))}, ret {fmt(_median(ret))}"
                  if label else ("control" if k == 0 else None))
          ax.plot(offsets, median, "-", lw=1.2, color=color, label=text)
    ax.axvline(0, color="k", lw=0.6)
    ax.axhline(0, color="k", lw=0.4)
    ax.set_title(size, fontsize=9)
    ax.set_xlabel("updates after the burst")
    ax.legend(fontsize=6)
  axes[0, 0].set_ylabel("task loss - loss before the burst")
  fig.suptitle(f"{task}: the task loss around a burst (medians over bursts and seeds)",
               fontsize=10)
  plots.tight(fig)
  plots.save(fig, path)
