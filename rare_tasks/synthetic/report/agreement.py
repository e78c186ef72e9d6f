"""How a grid run agrees with the closed form (families with theory): learned or not, cell by
cell, and the exact loss of every linear cell against the optimum it cannot beat."""

from __future__ import annotations

from typing import Any

import numpy as np

from rare_tasks.core import divergence
from rare_tasks.core.report import Section
from rare_tasks.synthetic.report.results_view import GridResults

FILES: tuple[str, ...] = ()


def applies(run: GridResults) -> bool:
  return run.predictions is not None


def optimum_check(run: GridResults) -> dict[str, Any]:
  """pi-weighted population loss of every linear cell against the closed-form optimum."""
  by_cell: dict[int, list[dict[str, Any]]] = {}
  for r in run.rows:
    by_cell.setdefault(r["cell"], []).append(r)
  ratios = []
  for c in run.cells:
    rs = by_cell[c.index]
    if any(np.isnan(r["population_fvu"]) for r in rs):  # nonlinear or diverged
      continue
    loss = sum(r["task_frequency"] * r["population_fvu"] * float(lam.sum())
               for r, lam in zip(rs, run.task.spectrum(c.values["beta"])))
    opt = run.predictions[c.index].optimal_loss
    ratios.append((loss - opt) / max(opt, 1e-12) if opt > 0 else loss)
  if not ratios:
    return {"cells_checked": 0}
  return {"cells_checked": len(ratios), "cells_below_optimum": int(sum(r < -1e-4 for r in ratios)),
          "min_relative_excess": float(min(ratios)), "median_relative_excess":
          float(np.median(ratios)), "max_relative_excess": float(max(ratios))}


def section(run: GridResults) -> Section:
  """The agreement over the cells that trained to the end: a diverged cell says nothing of
  what its width can learn, so it is left out and counted."""
  rows = [r for r in run.rows if r.get(divergence.FIELD) is None]
  diverged = len({r["cell"] for r in run.rows}) - len({r["cell"] for r in rows})
  rare_rows = [r for r in rows if r["is_rare"]]
  widths, freqs = run.widths, run.rare_frequencies
  widest_top = [r for r in rare_rows if r["width"] == widths[-1]
                and r["rare_frequency"] == freqs[-1]]
  narrow_rare = [r for r in rare_rows if r["width"] == widths[0]
                 and r["rare_frequency"] == freqs[0]]
  numbers = {
      "rare_agreement": _mean([r["learned"] == r["predicted_learned"] for r in rare_rows]),
      "all_task_agreement": _mean([r["learned"] == r["predicted_learned"] for r in rows]),
      "rare_learned_at_widest_highest": all(r["learned"] for r in widest_top),
      "rare_learned_at_narrowest_rarest": any(r["learned"] for r in narrow_rare),
      "optimum_check": optimum_check(run)}
  numbers["headline"] = (f"rare task learned/not-learned agrees with the closed form in "
                         f"{100 * numbers['rare_agreement']:.1f}% of cells")
  lines = ["## Agreement with the closed form", "",
           f"- Rare task learned / not learned, measured vs predicted: "
           f"{100 * numbers['rare_agreement']:.1f}% of cells agree "
           f"(all tasks: {100 * numbers['all_task_agreement']:.1f}%)"
           + (f"; {diverged} diverged cells left out." if diverged else "."),
           f"- Rare task learned at the widest width and highest frequency: "
           f"{numbers['rare_learned_at_widest_highest']}; at the narrowest width and rarest "
           f"frequency: {numbers['rare_learned_at_narrowest_rarest']}."]
  opt = numbers["optimum_check"]
  if opt.get("cells_checked"):
    lines.append(
        f"- Exact pi-weighted loss against the closed-form optimum ({opt['cells_checked']} linear "
        f"cells): {opt['cells_below_optimum']} below it; relative excess min "
        f"{opt['min_relative_excess']:.2e}, median {opt['median_relative_excess']:.2e}, max "
        f"{opt['max_relative_excess']:.2e}.")
  return Section(lines + [""], numbers)


def _mean(flags: list[bool]) -> float:
  return float(np.mean(flags)) if flags else float("nan")
