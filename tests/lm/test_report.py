"""The pretraining report from hand-made metrics and run info: the loss figure, summary.md's
numbers and table, and the headline numbers returned."""

import random

import numpy as np
import pytest

from rare_tasks.core.report import fmt
from rare_tasks.lm import config, report

FLOOR = 1.2345
# (member, step) -> (val_loss, train_loss, tokens_per_s)
VALUES = {
    (0, 10): (3.9, 4.1, 100.0), (0, 20): (2.9, 3.1, 200.0), (0, 30): (2.3456, 2.4111, 300.0),
    (1, 10): (4.0, 4.2, 150.0), (1, 20): (3.0, 3.2, 400.0), (1, 30): (2.5678, 2.6222, 1000.0),
}
SEEDS = {0: 11, 1: 17}


def _record(member: int, step: int) -> dict:
  val, train, rate = VALUES[member, step]
  return {"step": step, "member": member, "init_seed": SEEDS[member], "tokens": step * 2048,
          "train_loss": train, "val_loss": val, "val_gap": val - FLOOR, "tokens_per_s": rate,
          "model_tokens_per_s": 2 * rate, "learning_rate": 1e-3 * step / 30,
          "train_z_loss": 1e-4, "grad_norm": 0.5}


def _records() -> list[dict]:
  records = [_record(m, s) for (m, s) in VALUES]
  random.Random(0).shuffle(records)  # the report may not rely on the file's order
  return records


def _info(floor=FLOOR) -> dict:
  return {
      "params": {"total": 1_234_567, "non_embedding": 98_765, "nominal": 1_700_000.0,
                 "nominal_counts": "non-embedding + one 50304-row embedding"},
      "flops_per_token": 6.5e5, "tokens_per_step": 2048,
      "source": {"num_states": 2048, "entropy_rate": 1.5, "kind": "markov"},
      "loss_floor": floor, "mesh": {"member": 2, "data": 4, "fsdp": 1}, "platform": "cpu",
      "memory": "parameters, gradients and AdamW state: 0.001 GiB of 23 GiB host memory",
  }


def _write(tmp_path, records, info=None):
  c = config.resolve(config.base_config(), "cpu")
  (tmp_path / "figures").mkdir(exist_ok=True)
  numbers = report.write(tmp_path, c, info or _info(), records)
  return c, numbers, (tmp_path / "summary.md").read_text()


def test_by_member_groups_and_sorts_by_step():
  members = report.by_member(_records())
  assert sorted(members) == [0, 1]
  for m, rows in members.items():
    assert [r["step"] for r in rows] == [10, 20, 30]
    assert all(r["member"] == m for r in rows)
  assert list(members) == [0, 1]


def test_the_loss_figure_is_a_png(tmp_path):
  _write(tmp_path, _records())
  png = (tmp_path / report.LOSS_FIGURE).read_bytes()
  assert report.LOSS_FIGURE == "figures/loss.png"
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_the_summary_states_the_run(tmp_path):
  c, _, text = _write(tmp_path, _records())
  assert c.model.preset in text and "cpu_d32" in text
  assert fmt(2.3456) in text and fmt(2.5678) in text
  assert fmt(FLOOR) in text and "entropy floor 1.23" in text
  assert "1,234,567" in text and "98,765" in text
  assert "0.001 GiB" in text  # the memory estimate in words
  assert "2,048 tokens per step" in text
  assert "num_states 2048" in text and "entropy_rate 1.5" in text
  assert "after 30 steps" in text and "30 of 1000 steps" in text
  assert "![loss](figures/loss.png)" in text


def test_the_summary_has_a_table_row_per_member(tmp_path):
  _, _, text = _write(tmp_path, _records())
  rows = [line for line in text.splitlines() if line.startswith("| ") and "member" not in line]
  assert rows == [
      f"| 0 | 11 | {fmt(2.4111)} | {fmt(2.3456)} | {fmt(2.3456 - FLOOR)} |",
      f"| 1 | 17 | {fmt(2.6222)} | {fmt(2.5678)} | {fmt(2.5678 - FLOOR)} |",
  ]


def test_the_numbers_returned(tmp_path):
  _, numbers, text = _write(tmp_path, _records())
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
  records = _records()
  for r in records:  # member 1 now ends lower than member 0
    if r["step"] == 30:
      r["val_loss"] = {0: 3.25, 1: 1.75}[r["member"]]
  _, numbers, _ = _write(tmp_path, list(reversed(records)))
  assert numbers["final_val_loss"] == [3.25, 1.75]


def test_a_record_without_a_train_loss_still_reports(tmp_path):
  records = _records()
  for r in records:
    if r["member"] == 1 and r["step"] == 30:  # a re-measured end: no training since
      r.update(train_loss=None, train_z_loss=None, grad_norm=None)
  _, numbers, text = _write(tmp_path, records)
  assert f"| 1 | 17 |  | {fmt(2.5678)} | {fmt(2.5678 - FLOOR)} |" in text.splitlines()
  assert f"| 0 | 11 | {fmt(2.4111)} |" in text
  assert numbers["final_val_loss"] == [2.3456, 2.5678]
  assert (tmp_path / report.LOSS_FIGURE).stat().st_size > 0


def test_a_member_with_no_train_loss_at_all_still_draws(tmp_path):
  records = [dict(r, train_loss=None) if r["member"] == 0 else r for r in _records()]
  _, _, text = _write(tmp_path, records)
  assert f"| 0 | 11 |  | {fmt(2.3456)} |" in text
  assert (tmp_path / report.LOSS_FIGURE).read_bytes()[:4] == b"\x89PNG"


def test_an_unknown_loss_floor(tmp_path):
  records = [dict(r, val_gap=None) for r in _records()]
  _, numbers, text = _write(tmp_path, records, _info(floor=None))
  assert numbers["loss_floor"] is None
  assert "entropy floor" not in numbers["headline"]
  assert "best achievable loss on such a row unknown" in text
  assert f"| 0 | 11 | {fmt(2.4111)} | {fmt(2.3456)} |  |" in text.splitlines()
