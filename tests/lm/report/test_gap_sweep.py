"""Tests of rare_tasks/lm/report/gap_sweep.py: it applies to a grid of several gaps, the seed
means per (size, frequency, gap) in table order, and the section's table and figure."""

import pytest

from rare_tasks.lm import grid
from rare_tasks.lm.report import gap_sweep
from tests.lm.report.conftest import injection_config, injection_records, injection_run


def _config():
  c = injection_config()
  c.grid.update(dict(gap=(1, 4), seed=(0, 1)))
  c.injection.schedule = "bursts"
  return c


def _run(wd="."):
  c = _config()
  cells = grid.cells(c)
  records = injection_records(c, cells)
  for r in records:  # gap 4 ends 0.25 lower in loss; seed 1 another 0.5 lower
    r["comparison_train_loss"] -= 0.25 * (r["gap"] == 4) + 0.5 * r["seed"]
  return injection_run(c, wd, records)


def test_it_applies_to_a_grid_of_more_than_one_gap():
  assert gap_sweep.applies(_run())
  assert not gap_sweep.applies(injection_run())


def test_the_gap_effect_at_matched_frequency():
  run = _run()
  effect = gap_sweep.gap_effect(run.config, run.rows, "comparison")
  assert [e[:3] for e in effect] == [(s, f, g) for s in ("cpu_d16", "cpu_d64")
                                     for f in (0.001, 0.004, 0.01) for g in (1, 4)]
  by = {e[:3]: e[3:] for e in effect}
  # cpu_d64 at 0.004: final accuracy 0.92, loss 0.08 less the seeds' mean 0.25, less 0.25 at 4.
  assert by[("cpu_d64", 0.004, 1)] == pytest.approx((0.08 - 0.25, 0.92))
  assert by[("cpu_d64", 0.004, 4)] == pytest.approx((0.08 - 0.5, 0.92))


def test_the_section_tables_the_sweep_and_draws_the_figure(tmp_path):
  (tmp_path / "figures").mkdir()
  section = gap_sweep.section(_run(tmp_path), "comparison")
  assert section.lines[1].startswith("Gap sweep at matched frequency")
  assert len(section.lines) == 5 + 2 * 3 * 2
  assert "| cpu_d64 | 0.004 | 4 | -0.42 | 0.92 |" in section.lines
  assert section.files == ("figures/gap_comparison.png",)
  assert (tmp_path / "figures/gap_comparison.png").read_bytes()[:4] == b"\x89PNG"
