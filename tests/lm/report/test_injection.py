"""Tests of rare_tasks/lm/report/injection.py: the injection study's report written from planted
records: the figures and the gap table, summary.md's order, each task's figures linked after its
tables, the numbers returned and the files declared."""

import numpy as np

from rare_tasks.core import tables
from rare_tasks.lm import grid
from rare_tasks.lm.report import injection, results_table
from tests.lm.report.conftest import INFO, injection_config, injection_records, injection_tasks


def test_write_draws_the_figures_and_the_gap_table(tmp_path):
  c = injection_config()
  c.grid.gap = (1, 4)
  c.injection.schedule = "bursts"
  cells = grid.cells(c)
  summary = injection.write(tmp_path, c, INFO, cells, injection_tasks(),
                            injection_records(c, cells))
  for name in ("heatmap_comparison", "choice_comparison", "task_loss_comparison",
               "gap_comparison"):
    assert (tmp_path / f"figures/{name}.png").read_bytes()[:4] == b"\x89PNG"
  text = (tmp_path / "summary.md").read_text()
  assert "Gap sweep at matched frequency" in text and "| cpu_d64 | 0.004 | 4 |" in text
  assert summary["comparison"]["criterion_thresholds"][30]["cpu_d64"] == "0.004 (0.001, 0.004]"
  assert (tmp_path / "thresholds.csv").exists()
  rows = tables.read_csv(tmp_path / "results.csv")
  assert tuple(rows[0]) == results_table.COLUMNS and len(rows) == 2 * (3 * 2 + 1)
  assert np.isfinite(float(rows[0]["train_loss"]))


def test_the_summary_orders_the_opening_each_tasks_part_and_the_closing(tmp_path):
  c = injection_config()
  c.grid.task = ("comparison", "addition")
  cells = grid.cells(c)
  records = injection_records(c, cells)
  for r in records:  # addition: never learned
    for k, v in (("train_loss", 4.0), ("train_accuracy", 0.0), ("test_loss", 4.0),
                 ("test_accuracy", 0.0)):
      r[f"addition_{k}"] = v
  task_list = grid.tasks_of(c, 0)
  summary = injection.write(tmp_path, c, INFO, cells, task_list, records)
  lines = (tmp_path / "summary.md").read_text().splitlines()
  assert lines[0].startswith("# Rare tasks injected into pretraining")
  headline = ("comparison: threshold (accuracy) cpu_d16 0.01 (0.004, 0.01], cpu_d64 0.004 "
              "(0.001, 0.004]; addition: threshold (accuracy) cpu_d16 none (0.01, inf), cpu_d64 "
              "none (0.01, inf)")
  assert lines[2] == summary["headline"] == headline
  # Each task: its heading, then its figures' links; then the background and the pointer.
  expected = [line for t in ("comparison", "addition") for line in (
      f"## {t}", f"![heatmap_{t}](figures/heatmap_{t}.png)",
      f"![choice_{t}](figures/choice_{t}.png)", f"![task_loss_{t}](figures/task_loss_{t}.png)")]
  expected.append("## Background text (control cells, last step)")
  assert [line for line in lines if line in expected] == expected
  assert lines[-1].startswith("Per cell and task: [results.csv]")
  assert not any("gap_" in line or "Gap sweep" in line for line in lines)  # one gap
  assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(
      f"{kind}_{t}.png" for t in ("comparison", "addition")
      for kind in ("heatmap", "choice", "task_loss"))
  assert summary["addition"]["criterion_thresholds"][30] == {"cpu_d16": "none (0.01, inf)",
                                                             "cpu_d64": "none (0.01, inf)"}


def test_the_files_declared():
  assert set(injection.FILES) == {"results.csv", "thresholds.csv", "figures", "summary.md",
                                  "gradients.csv", "probes.csv", "retention.csv"}
