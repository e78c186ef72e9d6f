"""Tests of rare_tasks/lm/report/grid_setting.py: the injection summary's opening states the
grid, the headline, the tasks and the sizes with their parameters and batch."""

from rare_tasks.lm.report import grid_setting
from tests.lm.report.conftest import injection_run


def test_the_opening_states_the_grid():
  section = grid_setting.section(injection_run(), "the findings")
  lines = section.lines
  assert lines[0] == "# Rare tasks injected into pretraining: 2 sizes x 3 frequencies (per token)"
  assert lines[2] == "the findings" and section.numbers == {"headline": "the findings"}
  assert lines[4].startswith("- 8 cells: ")  # per size 3 frequencies and a control
  assert "30 steps of 32 rows of 64 tokens; schedule `steady`" in lines[4]
  assert "- tasks over p = " in lines[5] and "learned = train accuracy >= 0.9" in lines[5]
  assert lines[6] == ("- sizes: cpu_d16 (100 parameters, batch 32), cpu_d64 (1,000 parameters, "
                      "batch 32)")
  assert lines[-1] == ""
