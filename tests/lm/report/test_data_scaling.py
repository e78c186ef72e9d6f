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


def _records(c, learned=LEARNED, unlearned_seeds=()):
  """Each cell evaluated at a third, two thirds and all of its length; the task loss of an
  unlearned cell falls by 0.1 per evaluation from 2.0. A (size, steps, frequency, seed) in
  unlearned_seeds does not learn whatever LEARNED says."""
  out = []
  for cells in grid.cells(c).values():
    for cell in cells:
      ok = (cell.frequency in learned[(cell.size, cell.steps)]
            and (cell.size, cell.steps, cell.frequency, cell.seed) not in unlearned_seeds)
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
  (end_short, _, _), (end_long, slope, span) = v["losses"][0.001][30], v["losses"][0.001][120]
  assert end_short == pytest.approx(1.7) and end_long == pytest.approx(1.7)
  # 0.1 nats per evaluation, evaluations 40 steps apart at 120 steps: -2.5 per 1,000 steps.
  assert slope == pytest.approx(-2.5) and span == (80, 120)
  acc = v["thresholds"]["accuracy"]
  assert acc["cpu_d16"] == {"short": "0.01 (0.004, 0.01]", "long": "0.004 (0.001, 0.004]",
                            "falls": True}
  assert not acc["cpu_d64"]["falls"]
  assert v["counts"]["cpu_d16@30"] == {0.001: 0, 0.004: 0, 0.01: 3} and not v["unfinished"]


def test_a_frequency_learned_at_one_seed_of_three_is_not_learned():
  c = _config()
  # cpu_d16 at 120 steps learns 0.004 at seed 0 alone: no longer learnable via data scaling.
  misses = {("cpu_d16", 120, 0.004, 1), ("cpu_d16", 120, 0.004, 2)}
  v = data_scaling.verdict(injection_run(c, records=_records(c, unlearned_seeds=misses)),
                           "comparison")
  assert v["counts"]["cpu_d16@120"][0.004] == 1
  assert v["by_data"] == [] and v["by_size"] == [0.001, 0.004]
  # At two of three it still is.
  v = data_scaling.verdict(injection_run(c, records=_records(c, unlearned_seeds=misses - {
      ("cpu_d16", 120, 0.004, 2)})), "comparison")
  assert v["by_data"] == [0.004]


def test_the_section_states_both_findings_with_numbers():
  c = _config()
  lines = data_scaling.section(injection_run(c, records=_records(c)), "comparison").lines
  assert lines[0] == "### comparison: data scaling (30 against 120 steps, 4x)"
  assert "- cpu_d16 at 120 steps: 0.001 0, 0.004 3, 0.01 3" in lines
  assert ("- learnable via data scaling at this scale: cpu_d16 learns 0.004 only with 4x the "
          "steps") in lines
  assert any(line.startswith("- not learned at 4x: cpu_d64 learns 0.001 at 30 steps, cpu_d16 "
                             "not even at 120; its task loss 1.7 nats at 30 steps, 1.7 at 120, "
                             "changing by -2.5 nats per 1,000 steps over steps 80-120")
             for line in lines)
  assert lines[-3] == ("- thresholds under accuracy, 30 -> 120 steps: cpu_d16 0.01 (0.004, 0.01] "
                       "-> 0.004 (0.001, 0.004] (falls; the ranges separate); cpu_d64 0.001 "
                       "(0, 0.001] -> 0.001 (0, 0.001] (the ranges overlap)")
  assert lines[-2].startswith("- thresholds under choice accuracy, 30 -> 120 steps: ")


def test_when_more_steps_close_every_gap_the_section_says_so():
  c = _config()
  closes = dict(LEARNED)
  closes[("cpu_d16", 120)] = {0.01, 0.004, 0.001}
  closes[("cpu_d64", 30)] = {0.01, 0.004}
  closes[("cpu_d64", 120)] = {0.01, 0.004, 0.001}
  lines = data_scaling.section(injection_run(c, records=_records(c, closes)),
                               "comparison").lines
  assert ("- every frequency cpu_d64 learns and cpu_d16 does not at 30 steps (0.004) cpu_d16 "
          "learns at 120: at this scale the gap between them closes within 4x") in lines
  assert lines[-3].endswith("every size's threshold falls with the steps")


def test_with_no_gap_at_the_short_length_nothing_is_said_to_close():
  c = _config()
  same = {key: {0.01} for key in LEARNED}
  lines = data_scaling.section(injection_run(c, records=_records(c, same)), "comparison").lines
  assert ("- at 30 steps cpu_d64 learns no frequency that cpu_d16 does not: there is no gap for "
          "more steps to close") in lines


def test_unfinished_cells_make_the_verdict_provisional():
  c = _config()
  records = [r for r in _records(c) if not (r["size"] == "cpu_d16" and r["steps"] == 120
                                            and r["step"] == 120 and r["frequency"] == 0.001)]
  v = data_scaling.verdict(injection_run(c, records=records), "comparison")
  assert v["unfinished"] == ["cpu_d16 at 120"]


def test_it_applies_only_to_a_grid_of_several_lengths():
  assert not data_scaling.applies(injection_run())
  c = _config()
  assert data_scaling.applies(injection_run(c, records=_records(c)))
