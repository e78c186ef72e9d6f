"""Tests of rare_tasks/synthetic/report/predictions.py: predictions.json per cell."""

import json

from rare_tasks.synthetic.report import predictions
from tests.synthetic.report.conftest import hand_made_run


def test_predictions_hold_each_cells_optimum(tmp_path):
  run = hand_made_run(tmp_path)
  predictions.write_predictions(tmp_path, run.cells, run.predictions)
  out = json.loads((tmp_path / "predictions.json").read_text())
  assert [p["cell"] for p in out] == [0, 1, 2, 3]
  first = out[0]
  assert first["width"] == 1 and first["beta"] == 1.0  # the cell's values, as recorded
  assert first["kept_features_per_task"] == [1, 0, 0]
  assert len(first["utility_order"]) == 6
  assert first["predicted_fvu"] == run.predictions[0].fvu.tolist()
  assert first["optimal_loss"] == run.predictions[0].optimal_loss
