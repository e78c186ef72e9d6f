"""Tests of rare_tasks/lm/report/pretraining.py: the pretraining report from hand-made metrics and
run info: summary.md's statements, the headline numbers returned, and the files it declares."""

import numpy as np
import pytest

from rare_tasks.core.report import fmt
from rare_tasks.lm.report import pretraining
from tests.lm.report.conftest import FLOOR, pretraining_records, write_pretraining


def test_the_summary_states_the_run(tmp_path):
  c, _, text = write_pretraining(tmp_path, pretraining_records())
  assert c.model.preset in text and "cpu_d32" in text
  assert fmt(2.3456) in text and fmt(2.5678) in text
  assert fmt(FLOOR) in text and "entropy floor 1.23" in text
  assert "1,234,567" in text and "98,765" in text
  assert "0.001 GiB" in text  # the memory estimate in words
  assert "2,048 tokens per step" in text
  assert "num_states 2048" in text and "entropy_rate 1.5" in text
  assert "after 30 steps" in text and "30 of 1000 steps" in text
  assert "![loss](figures/loss.png)" in text


def test_the_numbers_returned(tmp_path):
  _, numbers, text = write_pretraining(tmp_path, pretraining_records())
  assert numbers["final_val_loss"] == [2.3456, 2.5678]
  # Each member's first record (compilation, warm-up) is left out: median of 200, 300, 400,
  # 1000; the median of all six would be 250.
  assert numbers["tokens_per_s"] == pytest.approx(350.0)
  assert numbers["steps"] == 30
  assert numbers["loss_floor"] == FLOOR
  headline = numbers["headline"]
  assert headline == (f"cpu_d32 x2: validation loss {fmt(np.mean([2.3456, 2.5678]))} "
                      f"(entropy floor {fmt(FLOOR)}) after 30 steps")
  assert headline in text
  assert f"median {fmt(350.0)} tokens/s ({fmt(700.0)} model-tokens/s" in text


def test_the_final_values_follow_member_order_not_the_records_order(tmp_path):
  records = pretraining_records()
  for r in records:  # member 1 now ends lower than member 0
    if r["step"] == 30:
      r["val_loss"] = {0: 3.25, 1: 1.75}[r["member"]]
  _, numbers, _ = write_pretraining(tmp_path, list(reversed(records)))
  assert numbers["final_val_loss"] == [3.25, 1.75]


def test_the_files_declared_are_the_summary_and_the_sections():
  assert pretraining.FILES == ("summary.md", "figures/loss.png")
