"""Tests of rare_tasks/lm/report/throughput.py: the median rate leaves each member's first record
out, and the training lines state the steps, batch, mesh and rates."""

import math
from pathlib import Path

from rare_tasks.core.report import fmt
from rare_tasks.lm.report import throughput
from rare_tasks.lm.report.pretraining_view import PretrainingRun
from tests.lm.report.conftest import pretraining_config, pretraining_info, pretraining_records


def _run(records):
  return PretrainingRun(pretraining_config(), Path("."), pretraining_info(), records)


def test_the_median_rate_leaves_out_each_members_first_record():
  assert throughput.median_rate(_run(pretraining_records())) == 350.0  # of 200, 300, 400, 1000
  firsts = [r for r in pretraining_records() if r["step"] == 10]
  assert math.isnan(throughput.median_rate(_run(firsts)))


def test_the_training_lines():
  section = throughput.section(_run(pretraining_records()))
  assert section.lines[0] == "## Training" and section.lines[-1] == ""
  assert section.lines[2].startswith("- 30 of 1000 steps of ")
  assert "2,048 tokens per step per model" in section.lines[2]
  assert "mesh {'member': 2, 'data': 4, 'fsdp': 1}" in section.lines[2]
  # 350 tokens/s per model, 2 members, 6.5e5 FLOPs per token: 0.455 GFLOP/s.
  assert section.lines[3] == (f"- median {fmt(350.0)} tokens/s ({fmt(700.0)} model-tokens/s, "
                              f"{fmt(0.455)} GFLOP/s achieved) on cpu")
  assert section.numbers == {"tokens_per_s": 350.0, "steps": 30}
  assert section.files == ()
