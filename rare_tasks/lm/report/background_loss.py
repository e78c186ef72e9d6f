"""The background text: each control cell's validation loss at its last evaluation, and its gap
to the source's entropy floor."""

from __future__ import annotations

from rare_tasks.core.report import Section, fmt
from rare_tasks.lm.report.injection_view import InjectionRun

FILES: tuple[str, ...] = ()


def applies(run: InjectionRun) -> bool:
  return True


def section(run: InjectionRun) -> Section:
  """A table row per control cell that has a validation loss, sizes in config order."""
  lines = ["## Background text (control cells, last step)", "",
           "| size | seed | validation loss | gap to the entropy floor |", "|---|---:|---:|---:|"]
  for s in run.sizes:
    for cell in run.cells[s]:
      last = run.histories.get(cell.index, [{}])[-1]
      if cell.is_control and "val_loss" in last:
        gap = "" if last.get("val_gap") is None else fmt(last["val_gap"])
        lines.append(f"| {s} | {cell.seed} | {fmt(last['val_loss'])} | {gap} |")
  return Section(lines + [""])
