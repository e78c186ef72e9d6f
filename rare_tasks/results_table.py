"""results.csv: one row per (cell, task) with the final measurement (beside the closed form, for
a task family that has one)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections

from rare_tasks import theory, workdir
from rare_tasks.grid import Cell

COLUMNS = ("width", "rare_frequency", "seed", "task", "task_frequency", "beta", "fvu",
           "predicted_fvu", "feature_capture", "learned", "predicted_learned", "is_rare",
           "population_fvu", "critical_width", "learning_rate", "common_exponent", "activation",
           "num_hidden_layers", "cell", "step")
# Families without closed-form theory: their per-task metrics (task.metric_names) in the middle.
_HEAD = ("width", "rare_frequency", "seed", "task", "task_frequency", "complexity")
_TAIL = ("learned", "is_rare", "learning_rate", "common_exponent", "activation",
         "num_hidden_layers", "cell", "step")


def columns(task) -> tuple[str, ...]:
  """results.csv's columns for a task family."""
  return COLUMNS if task.has_theory else _HEAD + tuple(task.metric_names) + _TAIL


def build_results(config: ml_collections.ConfigDict, task, cells: list[Cell],
                  predictions: dict[int, theory.Prediction | None],
                  metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Rows from each cell's final record in metrics.jsonl (at train.steps) and its prediction."""
  steps = config.train.steps
  final = {r["cell"]: r for r in metrics if r["step"] == steps}
  missing = [c.index for c in cells if c.index not in final]
  if missing:
    raise RuntimeError(f"cells {missing[:10]} have no measurement at step {steps} in "
                       f"{workdir.METRICS_FILE}; run the study again to finish them")
  rare = set(task.rare_tasks)
  rows = []
  for c in cells:
    v, rec, pred = c.values, final[c.index], predictions[c.index]
    mixture = task.mixture(v["rare_frequency"], v["common_exponent"])
    if not task.has_theory:
      rows += _rows_without_theory(config, task, c, rec, mixture)
      continue
    betas = task.betas(v["beta"])
    for k in range(task.num_tasks):
      # A diverged cell's NaN measurements are null in metrics.jsonl: NaN here, never learned.
      fvu = number(rec["fvu"][k])
      rows.append({
          "width": v["width"], "rare_frequency": v["rare_frequency"], "seed": v["seed"],
          "task": k, "task_frequency": float(mixture[k]), "beta": float(betas[k]),
          "fvu": fvu, "predicted_fvu": float(pred.fvu[k]),
          "feature_capture": number(rec["feature_capture"][k]),
          "learned": bool(fvu <= config.learned_fvu),
          "predicted_learned": bool(pred.fvu[k] <= config.learned_fvu),
          "is_rare": k in rare, "population_fvu": number(rec["population_fvu"][k]),
          "critical_width": int(pred.critical_width[k]),
          "learning_rate": v["learning_rate"], "common_exponent": v["common_exponent"],
          "activation": v["activation"], "num_hidden_layers": v["num_hidden_layers"],
          "cell": c.index, "step": steps})
  return rows


def _rows_without_theory(config, task, cell: Cell, rec: dict[str, Any],
                         mixture) -> list[dict[str, Any]]:
  v = cell.values
  complexity = task.complexity(v)
  rows = []
  for k in range(task.num_tasks):
    metrics = {name: number(rec[name][k]) for name in task.metric_names}
    rows.append({
        "width": v["width"], "rare_frequency": v["rare_frequency"], "seed": v["seed"],
        "task": k, "task_frequency": float(mixture[k]), "complexity": float(complexity[k]),
        **metrics, "learned": bool(metrics[task.loss_name] <= config.learned_fvu),
        "is_rare": k in task.rare_tasks, "learning_rate": v["learning_rate"],
        "common_exponent": v["common_exponent"], "activation": v["activation"],
        "num_hidden_layers": v["num_hidden_layers"], "cell": cell.index,
        "step": config.train.steps})
  return rows


def number(v: float | None) -> float:
  """A metrics.jsonl number: null (a NaN measurement) back to NaN."""
  return float("nan") if v is None else float(v)


def write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
  """A tidy CSV table: one line per row, the given columns in order, written atomically."""
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
  writer.writeheader()
  for r in rows:
    writer.writerow({k: r[k] for k in columns})
  workdir.write_text(path, buf.getvalue())


def write_results(wd: Path, rows: list[dict[str, Any]], task=None) -> None:
  write_csv(wd / "results.csv", COLUMNS if task is None else columns(task), rows)


def read_results(wd: Path) -> list[dict[str, str]]:
  with open(Path(wd) / "results.csv", newline="") as f:
    return list(csv.DictReader(f))
