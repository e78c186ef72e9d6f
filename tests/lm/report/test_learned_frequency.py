"""Tests of rare_tasks/lm/report/learned_frequency.py on planted results: each size's threshold
and range under both scores, separation between sizes, thresholds.csv, the learning order (a
frequency learned at one seed of two is not learned early), the headline and the section."""

import math

import pytest

from rare_tasks.analysis import thresholds
from rare_tasks.core import tables
from rare_tasks.lm import grid
from rare_tasks.lm.report import learned_frequency
from tests.lm.report.conftest import FIRST, injection_config, injection_records, injection_run


def test_thresholds_under_both_scores_on_planted_results():
  run = injection_run()
  acc = learned_frequency.size_thresholds(run, "comparison", 30, "accuracy")
  assert list(acc) == ["cpu_d16", "cpu_d64"]  # by parameter count
  assert (acc["cpu_d16"].threshold, acc["cpu_d16"].low, acc["cpu_d16"].high) == (0.01, 0.004,
                                                                                  0.01)
  assert (acc["cpu_d64"].threshold, acc["cpu_d64"].low) == (0.004, 0.001)
  assert learned_frequency.separation(acc) == ["cpu_d16 -> cpu_d64: separated, the threshold "
                                               "falls"]
  choice = learned_frequency.size_thresholds(run, "comparison", 30, "choice_accuracy")
  assert {s: st.threshold for s, st in choice.items()} == {"cpu_d16": 0.001, "cpu_d64": 0.001}
  assert learned_frequency.separation(choice) == ["cpu_d16 -> cpu_d64: ranges overlap"]


def test_with_three_sizes_the_smallest_is_also_set_against_the_largest():
  st = {s: thresholds.SizeThreshold(t, lo, hi, 3, 3, (t,) * 3, ()) for s, t, lo, hi in (
      ("a", 0.1, 0.05, 0.2), ("b", 0.1, 0.05, 0.1), ("c", 0.05, 0.025, 0.05))}
  assert learned_frequency.separation(st) == [
      "a -> b: ranges overlap", "b -> c: separated, the threshold falls",
      "a -> c: separated, the threshold falls"]


def test_a_diverged_cell_learns_nothing_and_only_it_is_counted(tmp_path):
  c = injection_config()
  c.grid.seed = (0, 1)
  records = injection_records(c, grid.cells(c))
  for r in records:  # seed 0's cell at 0.001 diverges; its other cells are unaffected
    if (r["size"], r["frequency"], r["seed"], r["step"]) == ("cpu_d64", 0.001, 0, 30):
      r["val_loss"] = float("nan")
  run = injection_run(c, wd=tmp_path, records=records)
  st = learned_frequency.size_thresholds(run, "comparison", 30, "choice_accuracy")["cpu_d64"]
  # Choice accuracy 1 everywhere: seed 1's threshold 0.001, seed 0's 0.004 (0.001 diverged).
  assert st.seed_thresholds == (0.004, 0.001) and (st.low, st.high) == (0.0, 0.004)
  learned_frequency.section(run, "comparison")
  rows = tables.read_csv(tmp_path / learned_frequency.THRESHOLDS_FILE)
  assert {r["diverged_cells"] for r in rows if r["size"] == "cpu_d64"} == {"1"}
  assert {r["diverged_cells"] for r in rows if r["size"] == "cpu_d16"} == {"0"}


def test_thresholds_csv_has_a_row_per_task_size_length_and_score(tmp_path):
  run = injection_run(wd=tmp_path)
  learned_frequency.section(run, "comparison")
  rows = tables.read_csv(tmp_path / learned_frequency.THRESHOLDS_FILE)
  assert tuple(rows[0]) == learned_frequency.COLUMNS and len(rows) == 2 * 2
  d16 = next(r for r in rows if r["size"] == "cpu_d16" and r["metric"] == "accuracy")
  assert (d16["steps"], d16["threshold"], d16["threshold_low"], d16["threshold_high"],
          d16["seeds"], d16["seeds_learned_at_max"]) == ("30", "0.01", "0.004", "0.01", "1", "1")


def test_the_learning_order_follows_the_frequency_order():
  run = injection_run()
  # Pairs: d16 (0.01 learned, 0.004 and 0.001 not): 2; d64: (0.01, 0.004) learned in order,
  # and both before 0.001: 3. All five follow the frequency order.
  assert learned_frequency.order_agreement(run, "comparison", 30,
                                           ["cpu_d16", "cpu_d64"]) == (1.0, 5)
  c = injection_config()
  backwards = {**FIRST, ("cpu_d64", 0.01): 30, ("cpu_d64", 0.004): 10}
  run = injection_run(c, records=injection_records(c, grid.cells(c), backwards))
  agreement, pairs = learned_frequency.order_agreement(run, "comparison", 30, ["cpu_d64"])
  assert (agreement, pairs) == (pytest.approx(2 / 3), 3)


def test_a_frequency_learned_at_one_seed_of_two_is_not_learned_early():
  c = injection_config()
  c.grid.seed = (0, 1)
  backwards = {**FIRST, ("cpu_d64", 0.01): 30, ("cpu_d64", 0.004): 10}
  records = injection_records(c, grid.cells(c), backwards)
  for r in records:  # seed 1 never learns 0.004 at cpu_d64; seed 0 learns it at step 10
    if r["size"] == "cpu_d64" and r["seed"] == 1 and r["frequency"] == 0.004:
      r["comparison_train_accuracy"] = 0.1
  run = injection_run(c, records=records)
  # cpu_d64: 0.01 at 30, 0.004 at (10 + 10 x 30) / 2 = 155, 0.001 never (300): the frequency
  # order. With the unlearned seed ignored, 0.004 (10) would come before 0.01.
  assert learned_frequency.order_agreement(run, "comparison", 30, ["cpu_d64"]) == (1.0, 3)


def test_no_frequency_learned_at_different_evaluations_gives_no_order():
  run = injection_run()
  for r in run.rows:
    r["first_learned_step"] = ""  # nothing ever learned: every frequency ties
  agreement, pairs = learned_frequency.order_agreement(run, "comparison", 30, ["cpu_d16"])
  assert pairs == 0 and math.isnan(agreement)


def test_the_headline_names_each_tasks_thresholds_per_size():
  found = {"comparison": {"criterion": "accuracy", "criterion_thresholds": {
      30: {"cpu_d16": "0.01 (0.004, 0.01]", "cpu_d64": "none (0.01, inf)"}}},
      "addition": {"criterion": "choice accuracy", "criterion_thresholds": {
          10: {"cpu_d16": "0.1 (0, 0.1]"}, 40: {"cpu_d16": "0.1 (0, 0.1]"}}}}
  assert learned_frequency.headline(found) == (
      "comparison: threshold (accuracy) cpu_d16 0.01 (0.004, 0.01], cpu_d64 none (0.01, inf); "
      "addition at 10 steps: threshold (choice accuracy) cpu_d16 0.1 (0, 0.1]; "
      "addition at 40 steps: threshold (choice accuracy) cpu_d16 0.1 (0, 0.1]")


def test_the_section_tables_both_scores_the_thresholds_and_the_findings(tmp_path):
  lines = learned_frequency.section(injection_run(wd=tmp_path), "comparison").lines
  assert lines[0] == "## comparison"
  assert lines[2].startswith("Learned: train accuracy >= 0.9, the mean of the last 1 ")
  assert "Exposures of each train instance: 0.001: 1.67, 0.004: 6.67, 0.01: 16.7." in lines
  assert "| cpu_d16 | 0 (0) | 0.5 (0) | 0.95 (1) |" in lines
  assert "| cpu_d64 | 1 (1) | 1 (1) | 1 (1) |" in lines  # choice accuracy
  assert ("| cpu_d16 | 100 | 0.01 (0.004, 0.01] | 0.001 (0, 0.001] | 1 / 1 of 1 | 0 |"
          in lines)
  assert "- accuracy: cpu_d16 -> cpu_d64: separated, the threshold falls" in lines
  assert any(line.startswith("- choice accuracy on pairs never injected") and
             "cpu_d16 0.75, cpu_d64 0.75; the control's" in line
             and line.endswith("cpu_d16 0.75, cpu_d64 0.75") for line in lines)
  assert any(line.startswith("- format rate") and line.endswith("cpu_d16 0.5, cpu_d64 0.5")
             for line in lines)
