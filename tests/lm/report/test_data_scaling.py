"""Tests of rare_tasks/lm/report/data_scaling.py on a planted two-length grid: the frequencies
learned only with more steps, those the largest size learns at the short length and the
smallest not even at the long one (with its task loss and slope), the thresholds' movement,
and the section's sentences whichever way the numbers fall."""

import pytest

from rare_tasks.lm import grid
from rare_tasks.lm.report import data_scaling
from tests.lm.report.conftest import injection_config, injection_run

# (size, steps) -> the frequencies learned (final train accuracy 1; else 0.2).
LEARNED = {("cpu_d16", 30): {0.01}, ("cpu_d16", 120): {0.01, 0.004},
           ("cpu_d64", 30): {0.01, 0.004, 0.001}, ("cpu_d64", 120): {0.01, 0.004, 0.001}}


def _config():
  c = injection_config()
  c.grid.steps = (30, 120)
  c.grid.seed = (0, 1, 2)
  return c


def _records(c, learned=LEARNED):
  """Each cell evaluated at a third, two thirds and all of its length; the task loss of an
  unlearned cell falls by 0.1 per evaluation from 2.0."""
  out = []
  for cells in grid.cells(c).values():
    for cell in cells:
      ok = cell.frequency in learned[(cell.size, cell.steps)]
      for k in (1, 2, 3):
        out.append(cell.record() | {
            "step": cell.steps * k // 3, "val_loss": 3.0, "instances_per_task": 10,
            "comparison_train_accuracy": 1.0 if ok else 0.2,
            "comparison_train_choice_accuracy": 1.0 if ok else 0.6,
            "comparison_train_loss": 0.01 if ok else 2.0 - 0.1 * k})
  return out


def test_the_verdict_on_planted_results():
  c = _config()
  v = data_scaling.verdict(injection_run(c, records=_records(c)), "comparison")
  assert (v["smallest"], v["largest"], v["short"], v["long"], v["ratio"]) == (
      "cpu_d16", "cpu_d64", 30, 120, 4)
  assert v["by_data"] == [0.004] and v["by_size"] == [0.001]
  (end_short, _), (end_long, slope) = v["losses"][0.001][30], v["losses"][0.001][120]
  assert end_short == pytest.approx(1.7) and end_long == pytest.approx(1.7)
  # 0.1 nats per evaluation, evaluations 40 steps apart at 120 steps: -2.5 per 1,000 steps.
  assert slope == pytest.approx(-2.5)
  assert v["thresholds"] == {"cpu_d16": (0.01, 0.004), "cpu_d64": (0.001, 0.001)}
  assert not v["all_move"]


def test_the_section_states_both_findings_with_numbers():
  c = _config()
  lines = data_scaling.section(injection_run(c, records=_records(c)), "comparison").lines
  assert lines[0] == "### comparison: data scaling (30 against 120 steps, 4x)"
  assert ("- learnable via data scaling at this scale: cpu_d16 learns 0.004 only with 4x the "
          "steps") in lines
  assert any(line.startswith("- not learned at 4x: cpu_d64 learns 0.001 at 30 steps, cpu_d16 "
                             "not even at 120; its task loss 1.7 at 30 steps, 1.7 at 120 "
                             "(slope -2.5") for line in lines)
  assert lines[-2] == ("- thresholds (median over seeds), 30 -> 120 steps: cpu_d16 0.01 -> "
                       "0.004; cpu_d64 0.001 -> 0.001")


def test_when_more_steps_close_every_gap_the_section_says_so():
  c = _config()
  closes = dict(LEARNED)
  closes[("cpu_d16", 120)] = {0.01, 0.004, 0.001}
  closes[("cpu_d64", 30)] = {0.01, 0.004}
  closes[("cpu_d64", 120)] = {0.01, 0.004, 0.001}
  lines = data_scaling.section(injection_run(c, records=_records(c, closes)),
                               "comparison").lines
  assert ("- no frequency that cpu_d64 learns at 30 steps stays unlearned by cpu_d16 at 120: at "
          "this scale every gap between them closes within 4x") in lines
  assert lines[-2].endswith("cpu_d64 0.004 -> 0.001; every threshold moves with steps")


def test_it_applies_only_to_a_grid_of_several_lengths():
  assert not data_scaling.applies(injection_run())
  c = _config()
  assert data_scaling.applies(injection_run(c, records=_records(c)))
