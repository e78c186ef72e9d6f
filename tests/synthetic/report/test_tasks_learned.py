"""Tests of rare_tasks/synthetic/report/tasks_learned.py on a hand-made sparse parity run: tasks
learned per width, most frequent first, and the loss-by-frequency figure."""

from rare_tasks.synthetic.report import tasks_learned
from tests.synthetic.report.conftest import hand_made_run


def test_tasks_learned_per_width_from_the_most_frequent_down(tmp_path):
  run = hand_made_run(tmp_path, "sparse_parity")
  assert tasks_learned.applies(run)
  section = tasks_learned.section(run)
  # learned.threshold 0.1: width 1 learns task 0 only, width 6 tasks 0 and 1.
  assert section.numbers["tasks_learned_by_width"] == {1: 1.0, 6: 2.0}
  assert section.numbers["headline"] == "tasks learned per width (mean over cells): 1: 1.0, 6: 2.0"
  text = "\n".join(section.lines)
  assert "| width | learned per cell | task 0 | task 1 | task 2 |" in text
  assert "| 1 | 1.0 | **0.05** | 0.50 | 0.90 |" in text
  assert (tmp_path / "figures" / "loss_by_task_frequency.png").stat().st_size > 10_000


def test_a_family_with_a_closed_form_reports_agreement_instead(tmp_path):
  assert not tasks_learned.applies(hand_made_run(tmp_path))
