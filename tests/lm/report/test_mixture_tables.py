"""Tests of rare_tasks/lm/report/mixture_tables.py: the tables' arithmetic against hand
computations on a design written by hand."""

import math

import numpy as np
import pytest

from rare_tasks.lm import mixture_config
from rare_tasks.lm.report import mixture_design
from rare_tasks.lm.report import mixture_tables as report

T = "comparison"
STEPS = 100
SEEDS = [0, 1]
F, T_ = False, True
# size -> (non-embedding, total, flops per token, tokens per step): 40, 160 and 640 FLOPs a step.
SIZES = {"a": (1000, 2000, 10, 4), "b": (4000, 6000, 40, 4), "c": (16000, 20000, 160, 4)}
# size -> (tested frequencies, learned (seeds, T)): seed thresholds a: 0.2, 0.4; b: 0.1, 0.1;
# c: 0.025 (learned at the lowest tested), 0.05.
TESTED = {"a": ([0.1, 0.2, 0.4], [[F, T_, T_], [F, F, T_]]),
          "b": ([0.05, 0.1, 0.2], [[F, T_, T_], [F, T_, T_]]),
          "c": ([0.025, 0.05, 0.1], [[T_, T_, T_], [F, T_, T_]])}
# (size, seed, frequency) -> (first learned step, final val_loss); frequency 0: the control.
CELLS = {("a", 0, 0.2): (60, 2.5), ("a", 1, 0.4): (80, 2.7), ("a", 0, 0.0): ("", 2.4),
         ("a", 1, 0.0): ("", 2.5), ("b", 0, 0.1): (40, 2.3), ("b", 1, 0.1): (60, 2.1),
         ("b", 0, 0.0): ("", 2.2), ("b", 1, 0.0): ("", 2.0), ("c", 0, 0.025): (20, 2.05),
         ("c", 1, 0.05): (40, 2.0), ("c", 0, 0.0): ("", 2.0), ("c", 1, 0.0): ("", 1.95),
         # cells off the thresholds: never read for the cost columns
         ("a", 0, 0.4): (20, 9.0), ("c", 0, 0.05): (10, 9.0)}


def design(tmp_path, targets=(0.04, 0.1, 0.31, 0.5, 0.02)) -> report.DesignRun:
  c = mixture_config.base_config()
  c.grid.task = (T,)
  c.design.min_frequency, c.design.max_frequency = 0.0125, 0.8
  c.design.target_frequencies = targets
  info = {"sizes": {s: {"params": {"non_embedding": n, "total": t}, "flops_per_token": f,
                        "tokens_per_step": k} for s, (n, t, f, k) in SIZES.items()}}
  keys = [(T, s, STEPS) for s in SIZES]
  tested = {(T, s, STEPS): (np.array(f), np.array(x)) for s, (f, x) in TESTED.items()}
  outcomes = [{"round": 0, "task": "" if f == 0 else T, "size": s, "steps": STEPS, "seed": seed,
               "frequency": f, "learned": f > 0, "diverged": False, "first_learned_step": first,
               "val_loss": loss} for (s, seed, f), (first, loss) in CELLS.items()]
  return report.DesignRun(config=c, wd=tmp_path, info=info, keys=keys, seeds=SEEDS,
                          tested=tested, outcomes=outcomes,
                          centers={k: (0.07, "design.initial_frequency") for k in keys},
                          rounds=2)


def test_design_rows_by_hand(tmp_path):
  rows = {r["size"]: r for r in report.design_rows(design(tmp_path))}
  a, b, c = rows["a"], rows["b"], rows["c"]
  def bracket(r):
    return r["threshold"], r["threshold_low"], r["threshold_high"]

  assert bracket(a) == pytest.approx((0.3, 0.1, 0.4))
  assert bracket(b) == pytest.approx((0.1, 0.05, 0.1))
  assert bracket(c) == pytest.approx((0.0375, 0.0, 0.05))
  assert a["seeds"] == 2 and a["seeds_learned_at_max"] == 2
  # compute to learn: median first learned step at each seed's threshold x FLOPs per step.
  assert a["compute_to_learn"] == pytest.approx(70 * 40)
  assert b["compute_to_learn"] == pytest.approx(50 * 160)
  assert c["compute_to_learn"] == pytest.approx(30 * 640)
  # background loss: mean over those cells; delta: mean of each minus its seed's control.
  assert a["background_loss"] == pytest.approx(2.6)
  assert a["background_loss_delta"] == pytest.approx(0.15)
  assert b["background_loss_delta"] == pytest.approx(0.1)
  assert c["background_loss_delta"] == pytest.approx(0.05)
  assert c["control_background_loss"] == pytest.approx(1.975)
  assert (a["params"], a["total_params"]) == (1000, 2000)
  assert a["resolution"] == pytest.approx(2.0) and c["resolution"] == pytest.approx(2.0)
  assert not any(r["never_learned"] for r in rows.values())


def test_tradeoff_against_the_largest_size_by_hand(tmp_path):
  run = design(tmp_path)
  trade = {t["size"]: t for t in report.tradeoff_rows(run, report.design_rows(run))}
  assert set(trade) == {"a", "b"} and trade["a"]["reference"] == "c"
  a, b = trade["a"], trade["b"]
  assert a["params_ratio"] == pytest.approx(16) and b["params_ratio"] == pytest.approx(4)
  assert a["upsampling"] == pytest.approx(8) and b["upsampling"] == pytest.approx(0.1 / 0.0375)
  assert a["compute_ratio"] == pytest.approx(19200 / 2800)
  assert b["compute_ratio"] == pytest.approx(19200 / 8000)
  assert a["background_loss_difference"] == pytest.approx(2.6 - 2.025)
  assert b["background_loss_difference"] == pytest.approx(2.2 - 2.025)
  text = mixture_design.sentence(a)
  assert "16 times smaller than c" in text and "upsampled 8 times" in text
  assert "6.86 times less compute" in text and "0.575 nats higher" in text


def test_min_size_inverse_by_hand(tmp_path):
  run = design(tmp_path)
  inv = {r["frequency"]: r for r in report.min_size_rows(run, report.design_rows(run))}
  assert [inv[f]["min_size"] for f in (0.02, 0.04, 0.1, 0.31, 0.5)] == ["", "c", "b", "a", "a"]
  # optimistic: each size's lowest seed threshold (0.2, 0.1, 0.025)
  assert [inv[f]["min_size_low"] for f in (0.02, 0.04, 0.1, 0.31)] == ["", "c", "b", "a"]
  # conservative: the highest (0.4, 0.1, 0.05)
  assert [inv[f]["min_size_high"] for f in (0.04, 0.1, 0.31, 0.5)] == ["", "b", "b", "a"]


def test_targets_spread_over_the_measured_range(tmp_path):
  run = design(tmp_path, targets=None)
  targets = report.targets_of(run, report.design_rows(run), T)
  assert len(targets) == report.TARGETS
  assert targets[0] == pytest.approx(0.0375) and targets[-1] == pytest.approx(0.3)


def test_power_law_and_grid_count(tmp_path):
  run = design(tmp_path)
  rows = report.design_rows(run)
  slope, lo, hi, n = report.power_law(run, rows, T, STEPS)
  assert n == 3 and slope == pytest.approx(math.log(0.125) / math.log(16))
  assert lo <= slope <= hi
  # 7 frequencies at ratio 2 over [0.0125, 0.8], x 2 seeds x 3 sizes, + a control per seed.
  assert report.grid_models(run, rows) == 7 * 2 * 3 + 3 * 2


def test_a_size_that_never_learns_is_said_to(tmp_path):
  run = design(tmp_path)
  f, _ = run.tested[(T, "a", STEPS)]
  run.tested[(T, "a", STEPS)] = (f, np.zeros((2, 3), bool))
  rows = {r["size"]: r for r in report.design_rows(run)}
  assert rows["a"]["never_learned"] and math.isinf(rows["a"]["threshold"])
  assert math.isnan(rows["a"]["compute_to_learn"])
  assert {t["size"] for t in report.tradeoff_rows(run, list(rows.values()))} == {"b"}
  mixture_design.write(run, trained=0, wall_s=1.0)
  assert "never learned up to 0.4, the highest frequency tested" in (
      tmp_path / "summary.md").read_text()


def test_outcomes_that_flip_with_frequency_are_counted(tmp_path):
  run = design(tmp_path)
  assert report.band(run, (T, "a", STEPS)) == (pytest.approx(0.2), 0)
  assert report.band(run, (T, "c", STEPS)) == (pytest.approx(0.025), 0)
  # seed 1 of b learns 0.05, not 0.1, then 0.2: its threshold is 0.2, the band starts at 0.05
  run.tested[(T, "b", STEPS)] = (np.array([0.05, 0.1, 0.2]),
                                 np.array([[F, T_, T_], [T_, F, T_]]))
  rows = {r["size"]: r for r in report.design_rows(run)}
  assert rows["b"]["non_monotone_seeds"] == 1
  assert rows["b"]["lowest_learned"] == pytest.approx(0.05)
  assert rows["b"]["threshold"] == pytest.approx((0.1 + 0.2) / 2)
  mixture_design.write(run, trained=0, wall_s=1.0)
  assert "b (1 of 2 seeds; learned as low as 0.05 against a threshold of 0.15)" in (
      tmp_path / "summary.md").read_text()
