"""Tests of rare_tasks/lm/report/loss_curves.py through the pretraining report: the loss figure,
the table's row per member, and records without a train loss."""

from rare_tasks.core.report import fmt
from rare_tasks.lm.report import loss_curves
from tests.lm.report.conftest import FLOOR, pretraining_records, write_pretraining


def test_the_loss_figure_is_a_png(tmp_path):
  write_pretraining(tmp_path, pretraining_records())
  png = (tmp_path / loss_curves.LOSS_FIGURE).read_bytes()
  assert loss_curves.LOSS_FIGURE == "figures/loss.png"
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_the_summary_has_a_table_row_per_member(tmp_path):
  _, _, text = write_pretraining(tmp_path, pretraining_records())
  rows = [line for line in text.splitlines() if line.startswith("| ") and "member" not in line]
  assert rows == [
      f"| 0 | 11 | {fmt(2.4111)} | {fmt(2.3456)} | {fmt(2.3456 - FLOOR)} |",
      f"| 1 | 17 | {fmt(2.6222)} | {fmt(2.5678)} | {fmt(2.5678 - FLOOR)} |",
  ]


def test_a_record_without_a_train_loss_still_reports(tmp_path):
  records = pretraining_records()
  for r in records:
    if r["member"] == 1 and r["step"] == 30:  # a re-measured end: no training since
      r.update(train_loss=None, train_z_loss=None, grad_norm=None)
  _, numbers, text = write_pretraining(tmp_path, records)
  assert f"| 1 | 17 |  | {fmt(2.5678)} | {fmt(2.5678 - FLOOR)} |" in text.splitlines()
  assert f"| 0 | 11 | {fmt(2.4111)} |" in text
  assert numbers["final_val_loss"] == [2.3456, 2.5678]
  assert (tmp_path / loss_curves.LOSS_FIGURE).stat().st_size > 0


def test_a_member_with_no_train_loss_at_all_still_draws(tmp_path):
  records = [dict(r, train_loss=None) if r["member"] == 0 else r for r in pretraining_records()]
  _, _, text = write_pretraining(tmp_path, records)
  assert f"| 0 | 11 |  | {fmt(2.3456)} |" in text
  assert (tmp_path / loss_curves.LOSS_FIGURE).read_bytes()[:4] == b"\x89PNG"
