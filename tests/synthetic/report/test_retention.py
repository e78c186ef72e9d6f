"""Tests of rare_tasks/synthetic/report/retention.py through a mechanism run: a row per burst and
signal, traces that tile the run and end at the final measurement, device count and resume."""

import numpy as np

from rare_tasks import injection
from rare_tasks.core import tables, traces, workdir
from rare_tasks.synthetic.grid import expand, group_cells
from rare_tasks.synthetic.report import retention
from tests.synthetic.conftest import mechanism_config
from tests.synthetic.report.conftest import assert_same_measurements


def test_a_row_per_burst_inside_the_run_and_signal(mechanism_run):
  wd, _ = mechanism_run
  rows = tables.read_csv(wd / "retention.csv")
  assert list(rows[0]) == list(retention.COLUMNS) == [
      "width", "gap", "rare_frequency", "seed", "burst", "gain", "retained_fraction",
      "half_life", "baseline_gain", "signal", "update", "before", "peak", "cell"]
  for gap, n in {1: 32, 4: 8}.items():
    assert len(injection.burst_updates(48, 16, gap)) == n
    for signal in retention.SIGNALS:
      # 2 widths x 2 seeds, one row per burst whose window lies inside the run.
      assert sum(r["gap"] == str(gap) and r["signal"] == signal for r in rows) == n * 4
  for name in retention.FIGURES:
    assert (wd / name).read_bytes()[:4] == b"\x89PNG"
  assert "## Injection and retention" in (wd / "summary.md").read_text()


def test_trace_covers_every_step_and_ends_at_the_final_measurement(mechanism_run):
  wd, _ = mechanism_run
  final = {r["cell"]: r for r in workdir.read_metrics(wd) if r["step"] == 48}
  groups = group_cells(expand(mechanism_config()))
  assert [g.name for g in groups] == ["width2_identity_depth0", "width6_identity_depth0"]
  for group in groups:
    trace = traces.read_group(wd, group.name)
    assert list(trace["steps"]) == list(range(49))
    assert trace["rare_fvu"].shape == (49, 2, 2, 1)
    # The last trace entry is the final exact rare FVU and capture of the same cell.
    for s, row in enumerate(group.cells):
      for p, cell in enumerate(row):
        np.testing.assert_allclose(trace["rare_fvu"][-1, s, p, 0],
                                   final[cell.index]["population_fvu"][3], rtol=1e-5)
        np.testing.assert_allclose(trace["rare_capture"][-1, s, p, 0],
                                   final[cell.index]["feature_capture"][3], rtol=1e-5,
                                   atol=1e-7)


def test_baseline_gain_is_the_withholding_phase_rise_of_the_same_trace(mechanism_run):
  wd, _ = mechanism_run
  rows = tables.read_csv(wd / "retention.csv")
  groups = {g.name: g for g in group_cells(expand(mechanism_config()))}
  checked = 0
  for name, group in groups.items():
    trace = traces.read_group(wd, name)
    for s, row in enumerate(group.cells):
      for p, cell in enumerate(row):
        gap = cell.values["gap"]
        signal = trace["rare_capture"][:, s, p].mean(-1)
        # Withheld for 16 updates: windows of `gap` updates tile updates 8..16.
        starts = range(16 - gap, 7, -gap)
        expected = np.median([signal[t + 1:t + gap + 1].max() - signal[t] for t in starts])
        mine = {float(r["baseline_gain"]) for r in rows
                if int(r["cell"]) == cell.index and r["signal"] == "feature_capture"}
        assert len(mine) == 1
        np.testing.assert_allclose(mine.pop(), expected, rtol=1e-6, atol=1e-12)
        checked += 1
  assert checked == 8


def test_one_device_equals_eight_and_resume_equals_uninterrupted(mechanism_run,
                                                                  mechanism_run_one_device,
                                                                  mechanism_run_resumed):
  assert_same_measurements("retention.csv", ("before", "peak", "baseline_gain"), mechanism_run[0],
                           mechanism_run_one_device, mechanism_run_resumed)
