"""Tests of rare_tasks/synthetic/report/agreement.py on a hand-made run: the fraction of cells
whose learned/not-learned agrees with the closed form, and the check against the optimum."""

from rare_tasks.synthetic.report import agreement
from tests.synthetic.report.conftest import hand_made_run


def test_agreement_counts_cells_and_checks_the_optimum(tmp_path):
  run = hand_made_run(tmp_path)
  assert agreement.applies(run)
  section = agreement.section(run)
  n = section.numbers
  assert n["rare_agreement"] == 0.75  # one of four cells disagrees
  assert n["optimum_check"]["cells_checked"] == 4
  assert n["optimum_check"]["cells_below_optimum"] == 1
  assert n["rare_learned_at_widest_highest"] is True
  assert n["rare_learned_at_narrowest_rarest"] is True
  assert n["headline"].endswith("agrees with the closed form in 75.0% of cells")
  text = "\n".join(section.lines)
  assert "75.0% of cells agree" in text and "1 below it" in text


def test_agreement_needs_a_closed_form(tmp_path):
  assert not agreement.applies(hand_made_run(tmp_path, "sparse_parity"))
