"""predictions.json: the closed-form optimum of every cell (families with theory), written before
training starts."""

from __future__ import annotations

import json
from pathlib import Path

from rare_tasks.core import workdir
from rare_tasks.core.report import Section
from rare_tasks.synthetic.grid import Cell
from rare_tasks.synthetic.theory import Prediction

PREDICTIONS_FILE = "predictions.json"
FILES = (PREDICTIONS_FILE,)
CAPTION = "utility order, kept features, predicted FVU and critical widths per cell"


def write(wd: Path, cells: list[Cell], predictions: dict[int, Prediction] | None) -> Section:
  """Writes predictions.json (nothing without a closed form); the Section lists it."""
  if predictions is None:
    return Section()
  write_predictions(wd, cells, predictions)
  return Section([], {}, FILES, {PREDICTIONS_FILE: CAPTION})


def write_predictions(wd: Path, cells: list[Cell], predictions: dict[int, Prediction]) -> None:
  """predictions.json: per cell, the utility order, how many of each task's features the optimum
  keeps (always its top ones), predicted FVU, critical widths and the optimal loss."""
  out = []
  for c in cells:
    p = predictions[c.index]
    out.append({
        "cell": c.index, **c.record,
        "utility_order": [[int(k), int(j), float(p.utilities[k, j])] for k, j in p.order],
        "kept_features_per_task": p.kept.sum(-1).astype(int).tolist(),
        "predicted_fvu": p.fvu.tolist(), "critical_width": p.critical_width.tolist(),
        "optimal_loss": p.optimal_loss})
  workdir.write_text(Path(wd) / PREDICTIONS_FILE, json.dumps(out, indent=1) + "\n")
