"""Tests of rare_tasks/lm/report/injection_retention.py: the updates that carry a cell's
instances, each burst's effectivity and retainability on a planted task-loss trace beside the
withholding phase's baseline and the control's, the sizes compared, and the section's table,
CSV and figure."""

import math

import numpy as np
import pytest

from rare_tasks.core import tables
from rare_tasks.lm import grid
from rare_tasks.lm.report import injection_retention as ir
from tests.lm.report.conftest import INFO, injection_config, injection_records, injection_run

STEPS, WITHHOLD, GAP = 30, 16, 4
# One instance per update in the long run at 32 rows of 64 tokens: 4 per burst of gap 4.
FREQUENCY = 1 / 2048
BURSTS = (16, 20, 24, 28)  # the last one's window would end at 32, past the run
DROP = 0.4
# The share of the drop still held at the next burst (3 updates after the lowest point), per
# (size, seed); the recovery is exponential, with half-life 3 / log2(1 / share).
RETAINED = {("cpu_d16", 0): 0.1, ("cpu_d16", 1): 0.3, ("cpu_d64", 0): 0.5,
            ("cpu_d64", 1): 0.7}


def half_life(size: str, seed: int) -> float:
  return 3 / math.log2(1 / RETAINED[(size, seed)])


def _config(gap=(GAP,)):
  """Two sizes x one frequency x seeds 0 and 1 (and a control per seed), in bursts of gap 4
  after 16 withheld updates, 30 updates evaluated at 10, 20 and 30."""
  c = injection_config()
  c.grid.update(dict(frequency=(FREQUENCY,), gap=gap, seed=(0, 1)))
  c.injection.update(dict(schedule="bursts", withhold_steps=WITHHOLD))
  c.mechanism.retention = True
  return c


def trace(cell: grid.Cell) -> np.ndarray:
  """The planted task loss after t = 0..30 updates (NaN at 0): 5 - 0.01 t while withheld; after
  each burst b of an injecting cell, DROP below its level at b, recovering with the cell's
  half-life until the next burst: L(b + j) = L(b) - DROP 2^(-(j - 1) / h), j = 1..4; after each
  burst slot of the control, 0.1 below, then 0.05 below until the next."""
  loss = np.full(STEPS + 1, np.nan)
  loss[1:WITHHOLD + 1] = 5 - 0.01 * np.arange(1, WITHHOLD + 1)
  for b in BURSTS:
    for j in range(1, GAP + 1):
      if b + j <= STEPS:
        if cell.is_control:
          loss[b + j] = loss[b] - (0.1 if j == 1 else 0.05)
        else:
          loss[b + j] = loss[b] - DROP * 2 ** (-(j - 1) / half_life(cell.size, cell.seed))
  return loss


def trace_records(c, cells):
  """Every cell's records at steps 10, 20 and 30, each with the trace read after the updates
  since the previous record."""
  by_index = {cell.index: cell for cs in cells.values() for cell in cs}
  out = []
  for r in injection_records(c, cells):
    first = r["step"] - 9
    values = trace(by_index[r["cell"]])[first:r["step"] + 1]
    out.append(r | {"trace_first": first, "comparison_trace_loss": values.tolist()})
  return out


def _run(c=None, wd="."):
  c = c or _config()
  return injection_run(c, wd, trace_records(c, grid.cells(c)))


def _cell(run, size, seed, control=False):
  return next(cell for cell in run.cells[size] if cell.seed == seed
              and cell.is_control == control)


def test_it_applies_to_a_run_that_traced_the_task_loss():
  assert ir.applies(_run())
  assert not ir.applies(injection_run())
  c = _config()
  untraced = [r | {"trace_first": None} for r in trace_records(c, grid.cells(c))]
  assert not ir.applies(injection_run(c, records=untraced))


def test_the_burst_updates_are_those_that_carry_instances():
  run = _run()
  np.testing.assert_array_equal(ir.burst_updates(run, _cell(run, "cpu_d16", 0)), BURSTS)
  np.testing.assert_array_equal(ir.burst_updates(run, _cell(run, "cpu_d16", 0, True)), [])


@pytest.mark.parametrize("tokens_per_step, carried", [
    # 32 rows: 1/8 instance per update, half an instance per burst: every other burst.
    (32 * 64, [20, 28]),
    # 64 rows: one instance per burst.
    (64 * 64, [16, 20, 24, 28])])
def test_a_burst_whose_share_rounds_to_none_is_not_one(tokens_per_step, carried):
  c = _config()
  c.grid.frequency = (1 / 16384,)
  info = {"sizes": {s: INFO["sizes"][s] | {"tokens_per_step": tokens_per_step}
                    for s in INFO["sizes"]}}
  run = injection_run(c)
  run = type(run)(run.config, run.wd, info, run.cells, run.task_list, run.records, run.rows)
  np.testing.assert_array_equal(ir.burst_updates(run, _cell(run, "cpu_d64", 1)), carried)


def test_each_burst_is_read_against_the_baseline_and_the_control():
  run = _run()
  cell = _cell(run, "cpu_d16", 0)
  rows = ir.cell_rows(run, cell, "comparison")
  assert [(r["injection"], r["step"]) for r in rows] == [(0, 16), (1, 20), (2, 24)]
  assert set(rows[0]) == set(ir.COLUMNS)
  before = 5 - 0.16
  for r in rows:
    assert (r["size"], r["frequency"], r["gap"], r["seed"], r["cell"], r["task"]) == (
        "cpu_d16", FREQUENCY, GAP, 0, cell.index, "comparison")
    # The drop to the lowest loss just after the burst; a tenth of it held at the next burst.
    assert r["effectivity"] == pytest.approx(DROP)
    assert r["retainability"] == pytest.approx(0.1)
    assert r["half_life"] == pytest.approx(3 / math.log2(10))
    # Withholding windows 8..12 and 12..16: 0.04 lower at their end, all of it held.
    assert r["baseline_gain"] == pytest.approx(0.04)
    assert r["baseline_retainability"] == pytest.approx(1.0)
    # The control over the same windows: 0.1 lower after one update, 0.05 held.
    assert r["control_gain"] == pytest.approx(0.1)
    assert r["control_retainability"] == pytest.approx(0.5)
  # Each burst starts where the previous one's recovery left the loss.
  np.testing.assert_allclose([r["loss_before"] for r in rows],
                             [before, before - 0.1 * DROP, before - 0.2 * DROP])


def test_the_window_and_lag_of_the_config_are_used():
  c = _config()
  c.mechanism.update(dict(effectivity_window=2, retention_lag=1))
  run = _run(c)
  rows = ir.cell_rows(run, _cell(run, "cpu_d64", 0), "comparison")
  assert len(rows) == 3
  for r in rows:
    assert r["effectivity"] == pytest.approx(DROP)
    # One update after the lowest point, at a half-life of 3: 2^(-1/3) of the drop held.
    assert r["retainability"] == pytest.approx(2 ** (-1 / 3))
    # The withholding phase's lowest point within 2 updates: 0.02, 0.03 one update on.
    assert r["baseline_gain"] == pytest.approx(0.02)
    assert r["baseline_retainability"] == pytest.approx(1.5)
    assert r["control_gain"] == pytest.approx(0.1)
    assert r["control_retainability"] == pytest.approx(0.5)


def test_rows_are_the_bursts_of_the_cells_injecting_in_bursts():
  c = _config(gap=(1, GAP))
  run = _run(c)
  rows = ir.rows(run)
  # 2 sizes x 2 seeds x 3 bursts of the gap-4 cells; neither the gap-1 cells nor the controls.
  assert len(rows) == 2 * 2 * 3
  assert {r["gap"] for r in rows} == {GAP}
  assert not {r["cell"] for r in rows} & {cell.index for cs in run.cells.values() for cell in cs
                                          if cell.is_control}


def test_an_untraced_cell_has_no_rows():
  c = _config()
  records = [r | {"trace_first": None, "comparison_trace_loss": None}
             for r in trace_records(c, grid.cells(c))]
  run = injection_run(c, records=records)
  assert ir.cell_rows(run, _cell(run, "cpu_d16", 0), "comparison") == []


def _table(size_values):
  return [{"size": size, "frequency": 0.5, "gap": 4, "seed": seed, "retainability": v}
          for size, by_seed in size_values.items() for seed, vs in by_seed.items() for v in vs]


@pytest.mark.parametrize("large, said", [
    ({0: [0.6, 0.9, 0.7], 1: [0.8]}, "higher in every seed"),
    ({0: [0.3], 1: [0.9]}, "higher on average, the seeds overlapping"),
    ({0: [0.3], 1: [0.35]}, "not higher"),
])
def test_the_largest_size_against_the_smallest(large, said):
  small = {0: [0.2, 0.6, 0.4], 1: [0.5, math.nan]}  # seed medians 0.4 and 0.5
  lines = ir.compare_sizes(_run(), _table({"cpu_d16": small, "cpu_d64": large}))
  assert lines[0] == ""
  assert lines[1].startswith("At frequency 0.5, cpu_d64's retainability (seed medians ")
  assert lines[1].endswith(f"against cpu_d16's (0.4, 0.5): {said}.")


def test_seed_medians_leave_out_nan():
  table = _table({"a": {0: [0.2, math.nan, 0.4], 1: [math.nan]}})
  medians = ir.seed_medians(table, "retainability")
  assert medians[0] == pytest.approx(0.3) and math.isnan(medians[1])


def test_the_section_writes_the_table_and_figure_and_compares_the_sizes(tmp_path):
  (tmp_path / "figures").mkdir()
  run = _run(wd=tmp_path)
  section = ir.section(run, "comparison")
  assert section.files == ("retention.csv", "figures/retention_comparison.png")
  assert (tmp_path / "figures/retention_comparison.png").read_bytes()[:4] == b"\x89PNG"
  text = (tmp_path / "retention.csv").read_text().splitlines()
  assert text[0] == ",".join(ir.COLUMNS) and len(text) == 1 + 2 * 2 * 3
  written = tables.read_csv(tmp_path / "retention.csv")
  assert [(r["size"], r["seed"], r["step"]) for r in written[:3]] == [
      ("cpu_d16", "0", "16"), ("cpu_d16", "0", "20"), ("cpu_d16", "0", "24")]
  assert float(written[0]["retainability"]) == pytest.approx(0.1)

  numbers = section.numbers["comparison_retention"]
  assert set(numbers) == {"cpu_d16 f=0.000488281 g=4", "cpu_d64 f=0.000488281 g=4"}
  small, large = numbers["cpu_d16 f=0.000488281 g=4"], numbers["cpu_d64 f=0.000488281 g=4"]
  assert small["bursts"] == large["bursts"] == 6
  # Retainability 0.1 at every burst of seed 0 and 0.3 of seed 1; at cpu_d64 0.5 and 0.7.
  assert small["retainability"] == pytest.approx(0.2)
  assert large["retainability"] == pytest.approx(0.6)
  for n in (small, large):
    assert n["effectivity"] == pytest.approx(DROP)
    assert n["baseline_gain"] == pytest.approx(0.04)
    assert n["control_gain"] == pytest.approx(0.1)
  median_half_life = (half_life("cpu_d16", 0) + half_life("cpu_d16", 1)) / 2  # 1.32
  assert ("| cpu_d16 | 0.000488281 | 4 | 6 | 0.4 [0.4, 0.4] | 0.04 | 0.1 | "
          f"0.2 [0.1, 0.3] | 0.5 | {median_half_life:.3g} |") in section.lines
  assert section.lines[-1] == (
      "At frequency 0.000488281, cpu_d64's retainability (seed medians 0.5, 0.7) against "
      "cpu_d16's (0.1, 0.3): higher in every seed.")


def test_sizes_are_compared_per_gap_when_the_grid_has_several():
  table = _table({"cpu_d16": {0: [0.2]}, "cpu_d64": {0: [0.9]}})
  table += [dict(r, gap=8, retainability=1 - r["retainability"]) for r in table]
  lines = ir.compare_sizes(_run(), table)
  assert lines[1].startswith("At frequency 0.5, gap 4, cpu_d64's") and lines[1].endswith(
      "higher in every seed.")
  assert lines[3].startswith("At frequency 0.5, gap 8, cpu_d64's") and lines[3].endswith(
      "not higher.")
