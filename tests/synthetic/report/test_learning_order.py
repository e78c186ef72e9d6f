"""Tests of rare_tasks/synthetic/report/learning_order.py: the table with and without a closed
form, the exact loss preferred to the sampled one, pooled pair agreement, resume."""

import numpy as np

from rare_tasks.core import tables
from rare_tasks.synthetic.report import learning_order
from rare_tasks.synthetic.tasks import LinearMixture, SparseParity


def test_a_row_per_cell_and_task_with_the_utility_prediction(mechanism_run):
  wd, report = mechanism_run
  rows = tables.read_csv(wd / "learning_order.csv")
  assert list(rows[0]) == ["width", "rare_frequency", "seed", "task", "task_frequency", "beta",
                           "top_utility", "learned_step", "predicted_learned_width", "is_rare",
                           "cell"]
  assert len(rows) == 8 * 4
  # Per-task betas differ: the section and its figure are written.
  assert (wd / "figures" / "learning_order.png").read_bytes()[:4] == b"\x89PNG"
  assert "## Learning order" in (wd / "summary.md").read_text()
  fraction, pairs = report.summary["learning_order"]["utility_pair_agreement"]
  assert pairs >= 0 and (pairs == 0 or 0 <= fraction <= 1)


def test_loss_matrix_prefers_the_exact_fvu():
  task = LinearMixture(2, 1)
  recs = [{"fvu": [0.9, 0.8], "population_fvu": [0.5, None]},
          {"fvu": [0.7, 0.6]}]
  np.testing.assert_array_equal(learning_order.loss_matrix(task, recs), [[0.5, 0.8], [0.7, 0.6]])


def test_pooled_agreement_weights_cells_by_their_pairs():
  assert learning_order._pooled([(1.0, 3), (0.0, 1), (float("nan"), 0)]) == (0.75, 4)
  assert learning_order._pooled([]) == (0.0, 0)


def test_columns_follow_the_family():
  class Run:  # the one attribute `columns` reads
    def __init__(self, task):
      self.task = task
  assert "top_utility" in learning_order.columns(Run(LinearMixture(2, 1)))
  assert learning_order.columns(Run(SparseParity(3, 4))) == (
      "width", "rare_frequency", "seed", "task", "task_frequency", "complexity", "learned_step",
      "is_rare", "cell")


def test_resume_equals_uninterrupted(mechanism_run, mechanism_run_resumed):
  wd, _ = mechanism_run
  assert ((mechanism_run_resumed / "learning_order.csv").read_text()
          == (wd / "learning_order.csv").read_text())
