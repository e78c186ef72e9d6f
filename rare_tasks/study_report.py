"""What a grid study writes after training: predictions.json, figures and summary.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from rare_tasks import figures, theory, workdir
from rare_tasks.config_schema import GRID_AXES
from rare_tasks.grid import Cell


def write_predictions(wd: Path, cells: list[Cell],
                      predictions: dict[int, theory.Prediction]) -> None:
  """predictions.json: per cell, the utility order, how many of each task's features the optimum
  keeps (always its top ones), predicted FVU, critical widths and the optimal loss."""
  out = []
  for c in cells:
    p = predictions[c.index]
    kept = p.kept
    out.append({
        "cell": c.index, **{k: list(v) if isinstance(v, tuple) else v
                            for k, v in c.values.items()},
        "utility_order": [[int(k), int(j), float(p.utilities[k, j])] for k, j in p.order],
        "kept_features_per_task": kept.sum(-1).astype(int).tolist(),
        "predicted_fvu": p.fvu.tolist(), "critical_width": p.critical_width.tolist(),
        "optimal_loss": p.optimal_loss})
  workdir.write_text(wd / "predictions.json", json.dumps(out, indent=1) + "\n")


def averaged_over(cells: list[Cell], shown: tuple[str, ...]) -> str:
  """What a number shown per `shown` axes averages over: the other grid axes that vary."""
  varying = [a for a in GRID_AXES if a not in shown
             and len({repr(c.values[a]) for c in cells}) > 1]
  return f"mean over {', '.join(varying)}" if varying else "one cell each"


def _optimum_check(task, cells, predictions, rows) -> dict[str, Any]:
  """pi-weighted population loss of every linear cell against the closed-form optimum."""
  by_cell: dict[int, list[dict[str, Any]]] = {}
  for r in rows:
    by_cell.setdefault(r["cell"], []).append(r)
  ratios = []
  for c in cells:
    rs = by_cell[c.index]
    if any(np.isnan(r["population_fvu"]) for r in rs):  # nonlinear or diverged
      continue
    loss = sum(r["task_frequency"] * r["population_fvu"] * float(lam.sum())
               for r, lam in zip(rs, task.spectrum(c.values["beta"])))
    opt = predictions[c.index].optimal_loss
    ratios.append((loss - opt) / max(opt, 1e-12) if opt > 0 else loss)
  if not ratios:
    return {"cells_checked": 0}
  return {"cells_checked": len(ratios), "cells_below_optimum": int(sum(r < -1e-4 for r in ratios)),
          "min_relative_excess": float(min(ratios)), "median_relative_excess":
          float(np.median(ratios)), "max_relative_excess": float(max(ratios))}


def write_report(config: ml_collections.ConfigDict, wd: Path, task, cells: list[Cell],
                 predictions: dict[int, theory.Prediction], rows: list[dict[str, Any]],
                 metrics: list[dict[str, Any]], wall_s: float, trained_steps: int,
                 extra_sections: list[str] = ()) -> dict[str, Any]:
  """Writes figures/ and summary.md (ending with `extra_sections`, markdown lines) from the
  results rows and the metrics.jsonl records; returns the headline numbers."""
  if not task.has_theory:
    return _write_report_without_theory(config, wd, task, cells, rows, metrics, wall_s,
                                        trained_steps, extra_sections)
  rare_rows = [r for r in rows if r["is_rare"]]
  agree = [r["learned"] == r["predicted_learned"] for r in rare_rows]
  agree_all = [r["learned"] == r["predicted_learned"] for r in rows]
  widths = np.array(sorted({r["width"] for r in rows}))
  freqs = np.array(sorted({r["rare_frequency"] for r in rows}))
  first_rare = task.rare_tasks[0]
  mean_fvu = _rare_grid(rows, first_rare, widths, freqs, "fvu")
  mean_pred = _rare_grid(rows, first_rare, widths, freqs, "predicted_fvu")

  # Critical width on a fine frequency grid, for the base exponent and spectrum.
  ref = cells[0].values
  f_hi = min(freqs[-1] * 2, 0.999 / task.num_rare)
  fine = np.geomspace(freqs[0] / 2, f_hi, 400)
  spectrum = task.spectrum(ref["beta"])

  def critical_width(f: float) -> int:
    mixture = task.mixture(f, ref["common_exponent"])
    return int(theory.predict(mixture, spectrum, 1).critical_width[first_rare])

  crit = np.array([critical_width(f) for f in fine])
  averaged = averaged_over(cells, ("width", "rare_frequency"))
  figures.width_by_frequency(
      wd / "figures" / "width_by_frequency.png", widths, freqs, mean_fvu, mean_pred,
      (fine, crit), config.learned_fvu,
      f"rare task {first_rare}: {config.task.num_tasks} tasks x {config.task.block_size} "
      f"features, {config.train.steps} steps, {averaged}")

  _learning_curves(wd, task, cells, metrics, widths, freqs[len(freqs) // 2], "FVU",
                   predictions)

  optimum = _optimum_check(task, cells, predictions, rows)
  diverged = sorted({r["cell"] for r in rows if np.isnan(r["fvu"])})
  widest_top = [r for r in rare_rows if r["width"] == widths[-1] and r["rare_frequency"] ==
                freqs[-1]]
  narrow_rare = [r for r in rare_rows if r["width"] == widths[0] and r["rare_frequency"] ==
                 freqs[0]]
  summary = {
      "cells": len(cells), "trained_steps_this_invocation": trained_steps,
      "wall_s_this_invocation": wall_s,
      "rare_agreement": float(np.mean(agree)), "all_task_agreement": float(np.mean(agree_all)),
      "rare_learned_at_widest_highest": all(r["learned"] for r in widest_top),
      "rare_learned_at_narrowest_rarest": any(r["learned"] for r in narrow_rare),
      "optimum_check": optimum, "diverged_cells": diverged, "averaged_over": averaged}
  summary["headline"] = (f"rare task learned/not-learned agrees with the closed form in "
                         f"{100 * summary['rare_agreement']:.1f}% of cells")
  crit_at = [critical_width(f) for f in freqs]
  text = _summary_md(config, task, cells, widths, freqs, mean_fvu, mean_pred, crit_at, summary)
  workdir.write_text(wd / "summary.md", text + "\n".join(extra_sections))
  return summary


def _rare_grid(rows: list[dict[str, Any]], rare_task: int, widths: np.ndarray,
               freqs: np.ndarray, column: str) -> np.ndarray:
  """Mean of `column` of the rare task's rows per (width, frequency), (W, F)."""
  out = np.full((len(widths), len(freqs)), np.nan)
  for i, w in enumerate(widths):
    for j, f in enumerate(freqs):
      out[i, j] = np.mean([r[column] for r in rows if r["task"] == rare_task
                           and r["width"] == w and r["rare_frequency"] == f])
  return out


def _learning_curves(wd: Path, task, cells: list[Cell], metrics: list[dict[str, Any]],
                     widths: np.ndarray, f_show: float, label: str,
                     predictions: dict[int, theory.Prediction] | None = None) -> None:
  """figures/learning_curves.png: each task's headline loss against step for the narrowest,
  middle and widest width at rare frequency f_show (with the closed-form optimum, if any)."""
  shown = sorted({widths[0], widths[len(widths) // 2], widths[-1]})
  curves = {}
  for w in shown:
    cell = next(c for c in cells if c.values["width"] == w and
                c.values["rare_frequency"] == f_show)
    recs = [r for r in metrics if r["cell"] == cell.index]
    curves[int(w)] = {"steps": np.array([r["step"] for r in recs]),
                      "fvu": np.array([r[task.loss_name] for r in recs], dtype=float),
                      "predicted": None if predictions is None else predictions[cell.index].fvu,
                      "label": f"rare freq {f_show:g}, seed {cell.values['seed']}"}
  figures.learning_curves(wd / "figures" / "learning_curves.png", curves, set(task.rare_tasks),
                          f"per-task {label} during training", metric=label)


def _write_report_without_theory(config, wd: Path, task, cells: list[Cell],
                                 rows: list[dict[str, Any]], metrics: list[dict[str, Any]],
                                 wall_s: float, trained_steps: int,
                                 extra_sections) -> dict[str, Any]:
  """The report of a family without a closed form: measured losses, and how many tasks, and
  which, each width learns."""
  metric, name = task.loss_name, config.task.name
  widths = np.array(sorted({r["width"] for r in rows}))
  freqs = np.array(sorted({r["rare_frequency"] for r in rows}))
  rare = task.rare_tasks[0]
  averaged = averaged_over(cells, ("width", "rare_frequency"))
  loss = _rare_grid(rows, rare, widths, freqs, metric)
  figures.width_by_frequency(
      wd / "figures" / "width_by_frequency.png", widths, freqs, loss, None, None,
      config.learned_fvu, f"rare task {rare} of {name}, {config.train.steps} steps, {averaged}",
      metric=metric)

  f_show = freqs[len(freqs) // 2]
  _learning_curves(wd, task, cells, metrics, widths, f_show, metric)

  at_f = [r for r in rows if r["rare_frequency"] == f_show]
  frequencies = task.mixture(f_show, cells[0].values["common_exponent"])
  final = {int(w): np.array([np.mean([r[metric] for r in at_f if r["width"] == w
                                      and r["task"] == k]) for k in range(task.num_tasks)])
           for w in widths}
  figures.loss_by_task_frequency(
      wd / "figures" / "loss_by_task_frequency.png", frequencies, final, config.learned_fvu,
      f"final per-task {metric} at rare frequency {f_show:g} "
      f"({averaged_over(cells, ('width', 'rare_frequency'))})", metric)

  learned_count = {int(w): float(np.mean([
      sum(r["learned"] for r in rows if r["cell"] == c.index)
      for c in cells if c.values["width"] == w])) for w in widths}
  diverged = sorted({r["cell"] for r in rows if np.isnan(r[metric])})
  summary = {
      "cells": len(cells), "trained_steps_this_invocation": trained_steps,
      "wall_s_this_invocation": wall_s, "tasks_learned_by_width": learned_count,
      "diverged_cells": diverged, "averaged_over": averaged,
      "headline": "tasks learned per width (mean over cells): " + ", ".join(
          f"{w}: {n:.1f}" for w, n in learned_count.items())}
  seeds = sorted({c.values["seed"] for c in cells})
  lines = [
      f"# Width x frequency study: {name}", "",
      f"{len(cells)} cells: widths {list(map(int, widths))} x rare frequencies "
      f"{[float(f) for f in freqs]} x seeds {seeds}; task `{name}` ({task}); model "
      f"`{config.model.name}` ({config.model.activation}, {config.model.num_hidden_layers} extra "
      f"layers); {config.train.optimizer} at {config.train.learning_rate} "
      f"({config.train.schedule}), {config.train.steps} steps of batch "
      f"{config.train.batch_size}.", "",
      f"This invocation: {trained_steps} steps trained (summed over groups), {wall_s:.1f} s wall.",
      "", f"## Rare-task {metric}, {averaged}", "",
      f"Bold: learned ({metric} <= {config.learned_fvu}).", "",
      "| width | " + " | ".join(f"f={f:g}" for f in freqs) + " |",
      "|---|" + "---|" * len(freqs)]
  for i, w in enumerate(widths):
    lines.append(f"| {int(w)} | " + " | ".join(
        f"**{v:.2f}**" if v <= config.learned_fvu else f"{v:.2f}" for v in loss[i]) + " |")
  lines += ["", f"## Tasks learned by width (rare frequency {f_show:g})", "",
            "Tasks in order of frequency, most frequent first; per width the mean final "
            f"{metric} of each task ({averaged_over(cells, ('width', 'rare_frequency'))}), "
            "bold where learned:", "",
            "| width | learned per cell | " + " | ".join(
                f"task {k}" for k in np.argsort(-frequencies)) + " |",
            "|---|---|" + "---|" * task.num_tasks]
  for w in widths:
    values = final[int(w)][np.argsort(-frequencies)]
    lines.append(f"| {int(w)} | {learned_count[int(w)]:.1f} | " + " | ".join(
        f"**{v:.2f}**" if v <= config.learned_fvu else f"{v:.2f}" for v in values) + " |")
  if diverged:
    lines += ["", f"Diverged (non-finite loss; counted as not learned): cells {diverged}."]
  lines += ["", "## Figures", "", "![width x frequency](figures/width_by_frequency.png)", "",
            "![loss by task frequency](figures/loss_by_task_frequency.png)", "",
            "![learning curves](figures/learning_curves.png)", "",
            "Tables: `results.csv` (one row per cell and task), `metrics.jsonl` (every "
            "evaluation).", ""]
  workdir.write_text(wd / "summary.md", "\n".join(lines) + "\n".join(extra_sections))
  return summary


def _summary_md(config, task, cells, widths, freqs, mean_fvu, mean_pred, crit_at,
                summary) -> str:
  seeds = sorted({c.values["seed"] for c in cells})
  lines = [
      "# Width x frequency study", "",
      f"{len(cells)} cells: widths {list(map(int, widths))} x rare frequencies "
      f"{[float(f) for f in freqs]} x seeds {seeds}; task `{config.task.name}` with "
      f"{config.task.num_tasks} tasks of {config.task.block_size} features "
      f"({config.task.num_rare} rare, common exponent {config.task.common_exponent}, "
      f"beta {config.task.beta}); model `{config.model.name}` "
      f"({config.model.activation}, {config.model.num_hidden_layers} extra layers); "
      f"{config.train.optimizer} at {config.train.learning_rate} ({config.train.schedule}), "
      f"{config.train.steps} steps of batch {config.train.batch_size}.",
      "", f"This invocation: {summary['trained_steps_this_invocation']} steps trained "
      f"(summed over groups), {summary['wall_s_this_invocation']:.1f} s wall.", "",
      f"## Rare-task FVU, measured (predicted), {summary['averaged_over']}", "",
      f"Bold: learned (FVU <= {config.learned_fvu}).", "",
      "| width | " + " | ".join(f"f={f:g}" for f in freqs) + " |",
      "|---|" + "---|" * len(freqs)]
  for i, w in enumerate(widths):
    cells_md = []
    for j in range(len(freqs)):
      m, p = mean_fvu[i, j], mean_pred[i, j]
      text = f"{m:.2f} ({p:.2f})"
      cells_md.append(f"**{text}**" if m <= config.learned_fvu else text)
    lines.append(f"| {int(w)} | " + " | ".join(cells_md) + " |")
  lines += ["", "Critical width of the rare task at each frequency: " +
            ", ".join(f"{f:g}: {c}" for f, c in zip(freqs, crit_at)), "",
            "## Agreement with the closed form", "",
            f"- Rare task learned / not learned, measured vs predicted: "
            f"{100 * summary['rare_agreement']:.1f}% of cells agree "
            f"(all tasks: {100 * summary['all_task_agreement']:.1f}%).",
            f"- Rare task learned at the widest width and highest frequency: "
            f"{summary['rare_learned_at_widest_highest']}; at the narrowest width and rarest "
            f"frequency: {summary['rare_learned_at_narrowest_rarest']}."]
  if summary["diverged_cells"]:
    lines.append(f"- Diverged (non-finite loss; counted as not learned): cells "
                 f"{summary['diverged_cells']} (see results.csv `cell`).")
  opt = summary["optimum_check"]
  if opt.get("cells_checked"):
    lines.append(
        f"- Exact pi-weighted loss against the closed-form optimum ({opt['cells_checked']} linear "
        f"cells): {opt['cells_below_optimum']} below it; relative excess min "
        f"{opt['min_relative_excess']:.2e}, median {opt['median_relative_excess']:.2e}, max "
        f"{opt['max_relative_excess']:.2e}.")
  lines += ["", "## Figures", "", "![width x frequency](figures/width_by_frequency.png)", "",
            "![learning curves](figures/learning_curves.png)", "",
            "Tables: `results.csv` (one row per cell and task), `predictions.json` (utility order, "
            "kept features, predicted FVU and critical widths per cell), `metrics.jsonl` "
            "(every evaluation).", ""]
  return "\n".join(lines)
