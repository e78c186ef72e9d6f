"""Tests of rare_tasks/lm/report/grid_setting.py: the injection summary's opening states the
grid, the headline, the tasks and the sizes with their parameters and batch."""

from rare_tasks.lm import grid
from rare_tasks.lm.report import grid_setting
from tests.lm.report.conftest import injection_config, injection_records, injection_run


def test_the_opening_states_the_grid():
  section = grid_setting.section(injection_run(), "the findings")
  lines = section.lines
  assert lines[0] == "# Rare tasks injected into pretraining: 2 sizes x 3 frequencies (per token)"
  assert lines[2] == "the findings" and section.numbers == {"headline": "the findings"}
  assert lines[4].startswith("- 8 cells: ")  # per size 3 frequencies and a control
  assert "30 steps (each its own warmup-cosine schedule) of 32 rows of 64 tokens" in lines[4]
  assert "schedule `steady`" in lines[4]
  (t,) = injection_run().task_list
  rows = t.split_rows()
  assert lines[5] == (f"- tasks over p = 6 symbols each, split `ordered`: comparison "
                      f"{len(t.train)} train instances (injected), {len(rows['test_unseen'])} "
                      "off-diagonal test pairs never injected in either order (test_unseen) and "
                      f"{len(rows['test_mirror'])} whose mirror was (test_mirror)")
  assert "choice accuracy" in lines[6] and "format rate" in lines[6]
  assert lines[7] == ("- sizes: cpu_d16 (100 parameters, batch 32), cpu_d64 (1,000 parameters, "
                      "batch 32)")
  assert lines[-1] == "" and not any("Not measured" in line for line in lines)


def test_a_run_from_before_choice_accuracy_says_what_was_not_measured():
  c = injection_config()
  records = injection_records(c, grid.cells(c), choice=False)
  lines = grid_setting.section(injection_run(c, records=records), "h").lines
  assert lines[-2].startswith("Not measured in this run (comparison): choice accuracy, format "
                              "rate and the test_unseen / test_mirror splits")
