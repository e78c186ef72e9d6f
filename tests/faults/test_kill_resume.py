"""SIGKILL at seeded random moments of the language-model smoke run, each time resumed by the
same command, ends bit-identical to the run left alone (benchmarks/kill_resume.py, 2 kills)."""

from benchmarks import kill_resume


def test_hard_kills_during_training_resume_bit_identically(tmp_path):
  # Moments inside the reference's training window (its first checkpoint to its last), so that
  # the first kill finds a checkpoint to resume from.
  r = kill_resume.run_study("lm_pretrain", kills=2, seed=0, root=tmp_path, window="training")
  assert r["failure"] is None, r["failure"]
  assert r["control"]["identical"], r["control"]["first_difference"]
  assert r["kills"] == 2, r["kill_list"]
  assert r["kills"] - r["kills_before_any_checkpoint"] >= 1, r["kill_list"]
  assert r["resumes"] >= 1
  assert r["bit_identical"], r["first_difference"]
  assert r["comparison"]["records"] == 2 * 6  # members x evaluations
  assert r["comparison"]["arrays"] > 0
