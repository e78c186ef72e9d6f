"""Tests of rare_tasks/lm/report/gradient_interference.py: gradients.csv's rows from the planted
decomposition, the phases at and between injection steps and the control's, the excess over the
null per seed and the verdict on it, the binned curves, and the section's table, CSV and figure."""

import dataclasses
import math

import numpy as np
import pytest

from rare_tasks.core import tables
from rare_tasks.lm import grid
from rare_tasks.lm.gradients import COSINES, NORMS
from rare_tasks.lm.report import gradient_interference as gi
from tests.lm.report.conftest import injection_config, injection_records, injection_run

WITHHOLD = 10
TOP_K = (0.1, 0.5)
# Per size, the support's dimension at each top_k.
DIMS = {"cpu_d16": [2, 8], "cpu_d64": [8, 32]}
# cos(g_nt, g_r) at the injection steps 12 and 14, per (size, seed).
AT = {("cpu_d16", 0): {12: 0.3, 14: 0.1}, ("cpu_d16", 1): {12: 0.2, 14: 0.4},
      ("cpu_d64", 0): {12: 0.01, 14: -0.03}, ("cpu_d64", 1): {12: 0.02, 14: 0.0}}
# The null's cos(g_nt, g_r) at the injection steps (0 elsewhere), per size.
NULL = {"cpu_d16": {12: 0.05, 14: -0.05}, "cpu_d64": {12: 0.01, 14: -0.01}}
STEPS = (5, 12, 13, 14)  # 5: withholding; 12, 14: injection steps; 13: between them


def _config():
  """Two sizes x one frequency x seeds 0 and 1 (and a control per seed), withholding 10 updates,
  the decomposition on two supports."""
  c = injection_config()
  c.grid.update(dict(frequency=(0.01,), seed=(0, 1)))
  c.injection.withhold_steps = WITHHOLD
  c.mechanism.update(dict(gradients=True, top_k=TOP_K))
  return c


def _values(cell: grid.Cell, step: int) -> dict[str, float]:
  """The planted decomposition on the comparison direction at the first support: an injecting
  cell's cos(g_nt, g_r) is AT's at its injection steps, 0.5 between them and 0.7 while withheld;
  a control's is -0.25 after the withholding phase and 0.9 in it. cos(g, g_r) is 0.6 and
  cos(update, g_r) -0.3 at injection steps (0 elsewhere); cos(g_t, g_r) 0.8; norms 1, 2, 3."""
  at = not cell.is_control and step in (12, 14)
  if cell.is_control:
    gnt = -0.25 if step > WITHHOLD else 0.9
  else:
    gnt = AT[(cell.size, cell.seed)][step] if at else (0.5 if step > WITHHOLD else 0.7)
  return {"cos_g_gr": 0.6 if at else 0.0, "cos_gt_gr": 0.8, "cos_gnt_gr": gnt,
          "cos_update_gr": -0.3 if at else 0.0,
          "null_cos_gnt_gr": NULL[cell.size].get(step, 0.0) if at else 0.0,
          "norm_g": 1.0, "norm_gt": 2.0, "norm_gnt": 3.0}


def gradient_records(cells: dict[str, list[grid.Cell]]) -> list[dict]:
  """Every cell's gradients.jsonl records at STEPS: the planted values at the first support,
  half of them at the second; and one record of a cell the grid does not have."""
  out = []
  for size, size_cells in cells.items():
    for cell in size_cells:
      for step in STEPS:
        values = _values(cell, step)
        r = {"cell": cell.index, "step": step,
             "injection_step": not cell.is_control and step in (12, 14),
             "top_k": list(TOP_K), "support_dim": DIMS[size]}
        r |= {f"comparison_{k}": [v, v / 2] for k, v in values.items()}
        out.append(r)
  stray = dict(out[0]) | {"cell": 999}
  return out + [stray]


def _run(wd="."):
  c = _config()
  cells = grid.cells(c)
  run = injection_run(c, wd, injection_records(c, cells))
  return dataclasses.replace(run, gradients=gradient_records(cells))


def test_it_applies_to_a_run_with_gradient_records():
  assert gi.applies(_run())
  assert not gi.applies(injection_run())


def test_rows_are_one_per_cell_step_task_and_support():
  run = _run()
  rows = gi.rows(run)
  # 2 sizes x 4 cells x 4 steps x 2 supports; the stray cell's record left out.
  assert len(rows) == 2 * 4 * 4 * 2
  assert {r["cell"] for r in rows} == set(range(8))
  cells = run.cells_by_index
  assert cells[5].size == "cpu_d64" and cells[5].seed == 1 and not cells[5].is_control
  (row,) = [r for r in rows if r["cell"] == 5 and r["step"] == 12 and r["top_k"] == 0.5]
  assert row == {"size": "cpu_d64", "frequency": 0.01, "gap": 1, "seed": 1, "steps": 30,
                 "cell": 5, "step": 12, "injection_step": True, "task": "comparison",
                 "injected": True, "top_k": 0.5, "support_dim": 32, "cos_g_gr": 0.3,
                 "cos_gt_gr": 0.4, "cos_gnt_gr": 0.01, "cos_update_gr": -0.15,
                 "null_cos_gnt_gr": 0.005, "norm_g": 0.5, "norm_gt": 1.0, "norm_gnt": 1.5}
  assert set(row) == set(gi.COLUMNS)
  control = [r for r in rows if cells[r["cell"]].is_control]
  assert len(control) == 2 * 2 * 4 * 2
  assert not any(r["injected"] or r["injection_step"] for r in control)
  assert {r["frequency"] for r in control} == {0.0}


def test_a_null_value_reads_as_nan_and_a_record_without_the_task_is_left_out():
  run = _run()
  records = [dict(r) for r in run.gradients[:2]]
  records[0]["comparison_cos_gnt_gr"] = [None, 0.25]
  records[1] = {k: v for k, v in records[1].items() if not k.startswith("comparison_")}
  rows = gi.rows(dataclasses.replace(run, gradients=records))
  assert len(rows) == 2
  assert math.isnan(rows[0]["cos_gnt_gr"]) and rows[1]["cos_gnt_gr"] == 0.25


def test_phases_split_at_between_and_control_by_injection_step_and_withholding():
  run = _run()
  ph = gi.phases(run, gi.rows(run), "comparison", "cpu_d16", 0.1)
  assert sorted((r["seed"], r["step"], r["cos_gnt_gr"]) for r in ph["at"]) == [
      (0, 12, 0.3), (0, 14, 0.1), (1, 12, 0.2), (1, 14, 0.4)]
  # Between: the injecting cells' other updates after the withholding phase (not step 5).
  assert sorted((r["seed"], r["step"]) for r in ph["between"]) == [(0, 13), (1, 13)]
  # The control after the withholding phase: steps 12, 13 and 14 of both seeds.
  assert sorted((r["seed"], r["step"]) for r in ph["control"]) == [
      (s, t) for s in (0, 1) for t in (12, 13, 14)]
  assert {r["cos_gnt_gr"] for r in ph["control"]} == {-0.25}
  assert len(ph["injecting"]) == 2 * 4 and all(r["injected"] for r in ph["injecting"])
  assert {r["size"] for p in ph.values() for r in p} == {"cpu_d16"}
  assert {r["top_k"] for p in ph.values() for r in p} == {0.1}
  other = gi.phases(run, gi.rows(run), "comparison", "cpu_d64", 0.5)
  assert sorted(r["cos_gnt_gr"] for r in other["at"]) == [-0.015, 0.0, 0.005, 0.01]


def test_the_excess_over_the_null_per_seed():
  rows = [{"seed": 0, "cos_gnt_gr": 0.3, "null_cos_gnt_gr": 0.1},
          {"seed": 0, "cos_gnt_gr": -0.1, "null_cos_gnt_gr": -0.1},
          {"seed": 1, "cos_gnt_gr": 0.05, "null_cos_gnt_gr": 0.02},
          {"seed": 1, "cos_gnt_gr": math.nan, "null_cos_gnt_gr": 0.02}]
  excess = gi.excess_by_seed(rows)
  assert list(excess) == [0, 1]
  # Seed 0: mean |cos| 0.2 less the null's mean |cos| 0.1; 0.2 over the null's sd 0.1.
  assert excess[0] == pytest.approx((0.1, 2.0))
  # Seed 1: the NaN left out of the mean; a null without spread has no z.
  assert excess[1][0] == pytest.approx(0.03)
  assert math.isnan(excess[1][1])
  assert gi.excess_by_seed([]) == {}


@pytest.mark.parametrize("small, large, said", [
    ({0: (0.2, 2.0), 1: (0.3, 3.0)}, {0: (0.05, 1.0), 1: (0.1, 1.5)},
     "big's is lower by more than the null explains, in every seed."),
    ({0: (0.1, 2.0), 1: (0.3, 3.0)}, {0: (0.05, 1.0), 1: (0.2, 1.5)},
     "big's is lower on average, but the seeds overlap."),
    ({0: (0.1, 2.0), 1: (0.2, 3.0)}, {0: (0.3, 1.0), 1: (0.05, 1.5)},
     "big's is not lower."),
])
def test_the_verdict_on_the_excess(small, large, said):
  text = gi.verdict(small, large, ("tiny", "big"))
  assert said in text
  s = [v[0] for v in small.values()]
  assert (f"tiny {np.mean(s):.3g} (seeds {min(s):.3g}..{max(s):.3g})") in text
  z = np.mean([v[1] for v in large.values()])
  assert f"and {z:.3g} at big" in text


def test_the_verdict_without_measurements_says_so():
  assert gi.verdict({}, {0: (0.1, 1.0)}, ("tiny", "big")) == (
      "Not measured at injection steps for both sizes.")


def test_binned_means_and_sds_leave_out_empty_bins():
  points = [(1, 1.0), (5, 3.0), (6, 5.0), (7, math.nan), (12, 2.0), (13, 4.0), (17, math.nan),
            (0, 100.0)]
  x, mean, sd = gi.binned(points, np.array([0.0, 5.0, 10.0, 15.0, 20.0]))
  # (0, 5]: 1 and 3 (step 0 outside); (5, 10]: 5; (10, 15]: 2 and 4; (15, 20]: only a NaN.
  np.testing.assert_allclose(x, [2.5, 7.5, 12.5])
  np.testing.assert_allclose(mean, [2.0, 5.0, 3.0])
  np.testing.assert_allclose(sd, [1.0, 0.0, 1.0])
  empty = gi.binned([], np.array([0.0, 1.0]))
  assert [len(a) for a in empty] == [0, 0, 0]


def test_the_section_writes_the_table_and_figure_and_tables_the_cosines(tmp_path):
  (tmp_path / "figures").mkdir()
  run = _run(tmp_path)
  section = gi.section(run, "comparison")
  assert section.files == ("gradients.csv", "figures/gradients_comparison.png")
  assert (tmp_path / "figures/gradients_comparison.png").read_bytes()[:4] == b"\x89PNG"
  lines = (tmp_path / "gradients.csv").read_text().splitlines()
  assert lines[0] == ",".join(gi.COLUMNS)
  assert len(lines) == 1 + 2 * 4 * 4 * 2
  written = tables.read_csv(tmp_path / "gradients.csv")
  (row,) = [r for r in written if r["cell"] == "1" and r["step"] == "14" and r["top_k"] == "0.1"]
  assert (row["size"], row["seed"], row["injected"], row["cos_gnt_gr"]) == (
      "cpu_d16", "1", "True", "0.4")

  numbers = section.numbers["comparison_gradients"]
  small = numbers["cpu_d16"]
  # At injection steps: 0.3, 0.1, 0.2, 0.4: mean 0.25, sd sqrt(0.0125).
  assert small["cos_gnt_gr_at"] == pytest.approx((0.25, math.sqrt(0.0125)))
  assert small["cos_g_gr_at"] == pytest.approx((0.6, 0.0))
  assert small["cos_update_gr_at"] == pytest.approx((-0.3, 0.0))
  assert small["cos_gnt_gr_between"] == pytest.approx((0.5, 0.0))
  assert small["control_cos_gnt_gr"] == pytest.approx((-0.25, 0.0))
  # The null over every update of the injecting cells: 0, 0.05, 0, -0.05 per seed.
  assert small["null_cos_gnt_gr"] == pytest.approx((0.0, math.sqrt(0.00125)))
  # Excess: seed 0 0.2 - 0.05, seed 1 0.3 - 0.05; z: 0.2 / 0.05 and 0.3 / 0.05.
  assert small["excess_by_seed"][0] == pytest.approx((0.15, 4.0))
  assert small["excess_by_seed"][1] == pytest.approx((0.25, 6.0))
  large = numbers["cpu_d64"]
  assert large["cos_gnt_gr_at"][0] == pytest.approx(0.0)
  assert large["excess_by_seed"][0] == pytest.approx((0.01, 2.0))
  assert large["excess_by_seed"][1] == pytest.approx((0.0, 1.0), abs=1e-12)

  (d16,) = [x for x in section.lines if x.startswith("| cpu_d16 | 2 |")]
  cols = [x.strip() for x in d16.strip("|").split("|")]
  assert cols == ["cpu_d16", "2", "0.6 +- 0 (4)", "0.8 +- 0 (4)", "0.25 +- 0.11 (4)",
                  "0.5 +- 0 (2)", "-0.3 +- 0 (4)", "-0.25 +- 0 (6)", "0 +- 0.035 (8)", "0.707"]
  assert any(x.startswith("| cpu_d64 | 8 |") and x.endswith("| 0.354 |") for x in section.lines)
  # The two supports side by side: the second's cosines and null are half the first's.
  assert "| cpu_d16 | 0.25 (null sd 0.0354) | 0.125 (null sd 0.0177) |" in section.lines
  assert section.lines[-1].startswith(
      "|cos(g_nt, g_r)| at injection steps, less the null's mean |cos|: cpu_d16 0.2 "
      "(seeds 0.15..0.25), cpu_d64 0.005")
  assert "cpu_d64's is lower by more than the null explains, in every seed." in (
      section.lines[-1])


def test_the_csv_columns_cover_every_value():
  assert set(COSINES) | set(NORMS) <= set(gi.COLUMNS)
  assert len(set(gi.COLUMNS)) == len(gi.COLUMNS)
