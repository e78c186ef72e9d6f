"""Tests of rare_tasks/study_report.py and rare_tasks/figures.py on a hand-made result table."""

import json

import numpy as np

from rare_tasks import figures, study_report, theory, workdir
from rare_tasks.config_schema import base_config
from rare_tasks.grid import expand
from rare_tasks.results_table import build_results
from rare_tasks.tasks import LinearMixture


def test_report_counts_agreement_and_checks_the_optimum(tmp_path):
  c = base_config()
  c.task.num_tasks, c.task.block_size = 3, 2
  c.grid.width, c.grid.rare_frequency, c.grid.seed = (1, 6), (0.05, 0.2), (0,)
  c.train.steps = 10
  task = LinearMixture(3, 2)
  cells = expand(c)
  preds = {cl.index: theory.predict(task.mixture(cl.values["rare_frequency"], 1.0),
                                    task.spectrum(1.0), cl.values["width"]) for cl in cells}
  metrics = []
  for cl in cells:
    fvu = preds[cl.index].fvu.copy()
    if cl.values["width"] == 1 and cl.values["rare_frequency"] == 0.05:
      fvu[2] = 0.1  # one cell disagrees: measured learned, predicted not
    # population FVU exactly at the optimum, except one cell slightly below it.
    pop = preds[cl.index].fvu - (0.01 if cl.index == 3 else 0.0)
    for step in (0, 10):
      metrics.append({"cell": cl.index, "step": step, "fvu": list(map(float, fvu)),
                      "population_fvu": list(map(float, pop)),
                      "feature_capture": [0.5] * 3})
  workdir.prepare(tmp_path, c, overwrite=False)
  workdir.append_metrics(tmp_path, metrics)
  rows = build_results(c, task, cells, preds, metrics)
  study_report.write_predictions(tmp_path, cells, preds)
  summary = study_report.write_report(c, tmp_path, task, cells, preds, rows, metrics, 1.0,
                                      20)
  assert summary["rare_agreement"] == 0.75
  assert summary["optimum_check"]["cells_checked"] == 4
  assert summary["optimum_check"]["cells_below_optimum"] == 1
  assert summary["rare_learned_at_widest_highest"] is True
  assert summary["rare_learned_at_narrowest_rarest"] is True
  md = (tmp_path / "summary.md").read_text()
  assert "75.0% of cells agree" in md and "1 below it" in md
  assert "| 1 | **0.10 (1.00)** |" in md
  pred_json = json.loads((tmp_path / "predictions.json").read_text())
  assert pred_json[0]["kept_features_per_task"] == [1, 0, 0]
  for name in ("width_by_frequency.png", "learning_curves.png"):
    assert (tmp_path / "figures" / name).stat().st_size > 10_000


def test_heatmap_edges_are_geometric_midpoints():
  np.testing.assert_allclose(figures._edges(np.array([1, 4, 16])), [0.5, 2, 8, 32])
  np.testing.assert_allclose(figures._edges(np.array([10.0])), np.exp(np.log(10) + [-0.5, 0.5]))
