"""Tests of rare_tasks/lm/report/pretraining_view.py: records grouped by member in step order,
each member's last record, and the furthest step."""

from pathlib import Path

import numpy as np

from rare_tasks.lm.report import pretraining_view
from rare_tasks.lm.report.pretraining_view import PretrainingRun
from tests.lm.report.conftest import pretraining_config, pretraining_info, pretraining_records


def test_by_member_groups_and_sorts_by_step():
  members = pretraining_view.by_member(pretraining_records())
  assert sorted(members) == [0, 1]
  for m, rows in members.items():
    assert [r["step"] for r in rows] == [10, 20, 30]
    assert all(r["member"] == m for r in rows)
  assert list(members) == [0, 1]


def _run(records):
  return PretrainingRun(pretraining_config(), Path("."), pretraining_info(), records)


def test_the_finals_are_each_members_last_record_in_member_order():
  records = [r for r in pretraining_records() if not (r["member"] == 1 and r["step"] == 30)]
  run = _run(records)
  assert {k: r["step"] for k, r in run.finals.items()} == {0: 30, 1: 20}
  np.testing.assert_array_equal(run.final_val, [2.3456, 3.0])
  assert run.steps == 30  # the furthest member's


def test_a_run_without_records_has_no_members_and_no_steps():
  run = _run([])
  assert run.members == {} and run.finals == {} and run.steps == 0
  assert run.final_val.shape == (0,)
