"""Tests of rare_tasks/lm/report/results_table.py: results rows say what each cell learned (the
mean of the last evaluations, under either score) and when, the count baseline and exposures,
NaN for what an older run did not measure, a diverged cell, unfinished cells left out, and
results.csv written with its pointer line."""

import math

import pytest

from rare_tasks.core import tables
from rare_tasks.lm import count_baseline, grid
from rare_tasks.lm.report import results_table
from tests.lm.report.conftest import (
  INFO,
  injection_config,
  injection_records,
  injection_run,
  injection_tasks,
)


def test_result_rows_say_what_each_cell_learned_and_when():
  c = injection_config()
  cells = grid.cells(c)
  rows = results_table.result_rows(c, INFO, cells, injection_records(c, cells), injection_tasks())
  assert len(rows) == 2 * (3 + 1)
  by = {(r["size"], r["frequency"]): r for r in rows}
  assert by[("cpu_d64", 0.004)]["learned"] and not by[("cpu_d16", 0.004)]["learned"]
  assert by[("cpu_d64", 0.004)]["first_learned_step"] == 20
  assert by[("cpu_d16", 0.001)]["first_learned_step"] == ""
  assert not any(r["generalised"] for r in rows)  # test accuracy is half the train's
  assert by[("cpu_d16", 0.0)]["params"] == 100 and by[("cpu_d16", 0.0)]["gap"] == 1


def test_a_cell_without_its_final_record_is_left_out():
  c = injection_config()
  cells = grid.cells(c)
  unfinished = cells["cpu_d64"][0]
  records = [r for r in injection_records(c, cells)
             if not (r["cell"] == unfinished.index and r["step"] == 30)]
  rows = results_table.result_rows(c, INFO, cells, records, injection_tasks())
  assert len(rows) == 2 * (3 + 1) - 1
  assert (unfinished.frequency, unfinished.gap) not in {
      (r["frequency"], r["gap"]) for r in rows if r["size"] == "cpu_d64"}


def test_the_section_writes_results_csv_and_points_to_it(tmp_path):
  run = injection_run(wd=tmp_path)
  section = results_table.section(run)
  rows = tables.read_csv(tmp_path / results_table.RESULTS_FILE)
  assert tuple(rows[0]) == results_table.COLUMNS and len(rows) == len(run.rows) == 8
  assert rows[0]["learned"] in ("True", "False")
  assert section.lines[0].startswith("Per cell and task: [results.csv](results.csv)")
  assert section.files == ("results.csv",)


def test_the_learned_criterion_reads_the_mean_of_the_last_evaluations():
  c = injection_config()
  c.learned.last_evals = 2
  cells = grid.cells(c)
  rows = results_table.result_rows(c, INFO, cells, injection_records(c, cells),
                                   injection_tasks())
  by = {(r["size"], r["frequency"]): r for r in rows}
  # cpu_d64 at 0.004: 0.9 at step 20, 0.92 at 30 -> 0.91; cpu_d16 at 0.01: 0.9, 0.95.
  assert by[("cpu_d64", 0.004)]["mean_train_accuracy"] == pytest.approx(0.91)
  assert by[("cpu_d64", 0.004)]["learned"]
  # cpu_d64 at 0.01: 0.9 at 20 (planted first at 10), 1.0 at 30.
  assert by[("cpu_d64", 0.01)]["mean_train_accuracy"] == pytest.approx(0.95)
  c.learned.threshold = 0.93
  rows = results_table.result_rows(c, INFO, cells, injection_records(c, cells),
                                   injection_tasks())
  by = {(r["size"], r["frequency"]): r for r in rows}
  assert not by[("cpu_d64", 0.004)]["learned"]  # 0.92 at the end alone would not be either
  assert by[("cpu_d64", 0.01)]["learned"]
  c.learned.criterion = "choice_accuracy"  # 1.0 on train everywhere: every cell learned
  rows = results_table.result_rows(c, INFO, cells, injection_records(c, cells),
                                   injection_tasks())
  assert all(r["learned"] for r in rows) and not any(r["generalised"] for r in rows)


def test_choice_columns_the_count_baseline_and_the_exposures():
  c = injection_config()
  cells = grid.cells(c)
  rows = results_table.result_rows(c, INFO, cells, injection_records(c, cells),
                                   injection_tasks())
  (task,) = injection_tasks()
  expected = count_baseline.choice_baselines(task)
  r = next(r for r in rows if r["size"] == "cpu_d64" and r["frequency"] == 0.004)
  for split in ("train", "test_unseen", "test_mirror"):
    assert r[f"{split}_choice_baseline"] == expected[split]
  assert r["test_choice_baseline"] == count_baseline.choice_baseline(task, task.test)
  assert (r["train_choice_accuracy"], r["test_unseen_choice_accuracy"],
          r["format_rate"]) == (1.0, 0.75, 0.5)
  assert r["exposures"] == pytest.approx(0.004 * 1000 * 30 / len(task.train))
  assert not r["diverged"]


def test_a_run_from_before_choice_accuracy_has_nan_columns_and_a_non_finite_loss_diverges():
  c = injection_config()
  cells = grid.cells(c)
  records = injection_records(c, cells, choice=False)
  broken = cells["cpu_d64"][0]
  for r in records:
    if r["cell"] == broken.index and r["step"] == 30:
      r["comparison_train_loss"] = None  # NaN, as metrics.jsonl writes it
  rows = results_table.result_rows(c, INFO, cells, records, injection_tasks())
  assert all(math.isnan(r[k]) for r in rows for k in (
      "train_choice_accuracy", "test_unseen_accuracy", "test_mirror_loss", "format_rate",
      "mean_train_choice_accuracy"))
  assert all(math.isfinite(r["train_choice_baseline"]) for r in rows)  # needs no model
  assert {r["generalised"] for r in rows if not r["diverged"]} == {""}  # unknown, not False
  bad = next(r for r in rows if r["size"] == "cpu_d64" and r["frequency"] == broken.frequency)
  assert bad["diverged"] and not bad["learned"]  # its accuracy (1.0) would say learned
  assert sum(r["diverged"] for r in rows) == 1
