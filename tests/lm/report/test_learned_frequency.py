"""Tests of rare_tasks/lm/report/learned_frequency.py on planted results: the science read from
them (smallest learned frequency per size, sizes that differ, monotonicity, learning order), the
headline and the task's table."""

import math

import pytest

from rare_tasks.lm import grid
from rare_tasks.lm.report import learned_frequency, results_table
from tests.lm.report.conftest import (
  FIRST,
  INFO,
  injection_config,
  injection_records,
  injection_run,
)


def test_science_on_planted_results():
  c = injection_config()
  cells = grid.cells(c)
  rows = results_table.result_rows(c, INFO, cells, injection_records(c, cells))
  found = learned_frequency.science(c, rows, "comparison", list(c.grid.size),
                                    {"cpu_d16": 100, "cpu_d64": 1000})
  assert found["smallest_learned"] == {"cpu_d16": 0.01, "cpu_d64": 0.004}
  assert found["only_largest"] == [0.004]
  assert found["monotone"]
  # Pairs: d16 (0.01 learned, 0.004 and 0.001 not): 2; d64: (0.01, 0.004) learned in order,
  # and both before 0.001: 3. All five follow the frequency order.
  assert found["order_agreement"] == 1.0 and found["order_pairs"] == 5


def test_a_learning_order_against_frequency_is_counted():
  c = injection_config()
  cells = grid.cells(c)
  backwards = {**FIRST, ("cpu_d64", 0.01): 30, ("cpu_d64", 0.004): 10}
  rows = results_table.result_rows(c, INFO, cells, injection_records(c, cells, backwards))
  found = learned_frequency.science(c, rows, "comparison", list(c.grid.size),
                                    {"cpu_d16": 100, "cpu_d64": 1000})
  assert found["order_agreement"] == pytest.approx(4 / 5)


def test_a_smallest_learned_frequency_that_rises_with_size_is_reported():
  c = injection_config()
  cells = grid.cells(c)
  rows = results_table.result_rows(c, INFO, cells, injection_records(c, cells))
  found = learned_frequency.science(c, rows, "comparison", list(c.grid.size),
                                    {"cpu_d16": 1000, "cpu_d64": 100})  # sizes swapped
  assert not found["monotone"] and found["only_largest"] == []


def test_no_frequency_learned_at_different_evaluations_gives_no_order():
  c = injection_config()
  cells = grid.cells(c)
  rows = results_table.result_rows(c, INFO, cells, injection_records(c, cells))
  for r in rows:
    r["first_learned_step"] = ""  # nothing ever learned: every frequency ties
  agreement, pairs = learned_frequency.order_agreement(c, rows, "comparison", ["cpu_d16"])
  assert pairs == 0 and math.isnan(agreement)


def test_the_headline_names_each_tasks_smallest_learned_frequency_per_size():
  found = {"comparison": {"smallest_learned": {"cpu_d16": 0.01, "cpu_d64": None}},
           "addition": {"smallest_learned": {"cpu_d16": 0.125}}}
  assert learned_frequency.headline(found) == (
      "comparison: smallest learned frequency cpu_d16 0.01, cpu_d64 none; "
      "addition: smallest learned frequency cpu_d16 0.125")


def test_the_section_tables_the_seed_mean_accuracy_and_states_the_findings():
  run = injection_run()
  section = learned_frequency.section(run, "comparison")
  lines = section.lines
  assert lines[0] == "## comparison"
  assert "| size | 0.001 | 0.004 | 0.01 | smallest learned |" in lines
  assert "| cpu_d16 | 0 | 0.5 | 0.95 | 0.01 |" in lines
  assert "| cpu_d64 | 0.1 | 0.92 | 1 | 0.004 |" in lines
  assert lines[-3].endswith("(cpu_d16): 0.004")
  assert lines[-2].endswith(": yes") and "of the 5 pairs" in lines[-1] and "100%" in lines[-1]
  found = section.numbers["comparison"]
  assert found["accuracy"] == [[0.0, 0.5, 0.95], [0.1, 0.92, 1.0]]  # a list, for the summary
