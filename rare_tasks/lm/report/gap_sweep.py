"""The gap sweep at matched frequency, for a grid of more than one gap: per task the seed-mean
final train loss and accuracy of each (size, frequency, gap), and figures/gap_<task>.png (paper
Fig. 6b), the train-instance loss against step, a line per gap, a panel per size and
frequency."""

from __future__ import annotations

from typing import Any

import ml_collections

from rare_tasks.core import tables, workdir
from rare_tasks.core.report import Section, fmt
from rare_tasks.lm.report.injection_view import FIGURES, InjectionRun
from rare_tasks.lm.report.task_loss_curves import curves_figure, longest

FILES = (FIGURES,)


def applies(run: InjectionRun) -> bool:
  return len(run.config.grid.gap) > 1


def gap_effect(c: ml_collections.ConfigDict, rows: list[dict[str, Any]],
               task: str) -> list[tuple[str, float, int, float, float]]:
  """(size, frequency, gap, seed-mean final train loss, train accuracy) at matched frequency,
  sizes in config order, then by frequency and gap."""
  loss = tables.mean_by([r for r in rows if r["task"] == task and r["frequency"] > 0],
                        ("size", "frequency", "gap"), "train_loss")
  acc = tables.mean_by([r for r in rows if r["task"] == task and r["frequency"] > 0],
                       ("size", "frequency", "gap"), "train_accuracy")
  return [(*k, v, acc[k]) for k, v in sorted(loss.items(), key=lambda kv: (
      list(c.grid.size).index(kv[0][0]), kv[0][1], kv[0][2]))]


def section(run: InjectionRun, task: str) -> Section:
  """Draws the task's loss curves per gap; returns the gap table."""
  name = run.figure("gap", task)
  if workdir.is_writer():
    curves_figure(run.wd / name, run.config, longest(run), run.histories, task, "gap")
  lines = ["", "Gap sweep at matched frequency (seed-mean final train loss / accuracy):", "",
           "| size | frequency | gap | train loss | train accuracy |",
           "|---|---:|---:|---:|---:|"]
  lines += [f"| {s} | {f:g} | {g} | {fmt(loss)} | {fmt(acc)} |"
            for s, f, g, loss, acc in gap_effect(run.config, [
                r for r in run.rows if r["steps"] == max(run.lengths)], task)]
  return Section(lines, {}, (name,))
