"""Tests of rare_tasks/lm/report/mixture_design.py: the files, figure and summary written from a
design written by hand (tests/lm/report/test_mixture_tables.py checks its numbers)."""

import pytest

from rare_tasks.core import tables
from rare_tasks.lm.report import mixture_design as report
from rare_tasks.lm.report import mixture_tables
from tests.lm.report.test_mixture_tables import CELLS, STEPS, T, design


def test_write_files_and_summary(tmp_path):
  numbers = report.write(design(tmp_path), trained=0, wall_s=1.0)
  for name in (report.DESIGN_FILE, report.MIN_SIZE_FILE, report.TRADEOFF_FILE):
    assert (tmp_path / name).exists()
  rows = tables.read_csv(tmp_path / report.DESIGN_FILE)
  assert list(rows[0])[:11] == list(mixture_tables.COLUMNS[:11])
  assert (tmp_path / report.figure_path(T)).stat().st_size > 10_000
  text = (tmp_path / "summary.md").read_text()
  assert "exponent **-0.75**" in text and "a model 16 times smaller" in text
  assert numbers["models"] == len(CELLS) and numbers["grid_models"] == 48
  assert numbers[T][STEPS]["thresholds"]["c"] == pytest.approx(0.0375)


def test_the_sentence_says_more_compute_when_the_small_size_needs_more():
  row = {"size": "a", "reference": "c", "params_ratio": 16.0, "upsampling": 8.0,
         "threshold": 0.3, "reference_threshold": 0.0375, "compute_ratio": 0.5,
         "background_loss_difference": -0.25}
  text = report.sentence(row)
  assert "for 2 times more compute to learn" in text and "0.25 nats lower" in text


def test_training_length_lines(tmp_path):
  run = design(tmp_path)
  rows = mixture_tables.design_rows(run)
  longer = [dict(r, steps=4 * STEPS, threshold=r["threshold"] / 2) for r in rows]
  lines = report.length_lines(run, rows + longer, T)
  assert lines[0].startswith(f"Training length: {4 * STEPS} against {STEPS} steps (4x")
  assert "a: the needed frequency goes from 0.3 to 0.15 (2 times lower)" in "\n".join(lines)


def test_diverged_cells_of_every_round_are_listed_in_the_summary(tmp_path):
  run = design(tmp_path)
  run.outcomes[3] = dict(run.outcomes[3], diverged=True, learned=False, diverged_step=7)
  numbers = report.write(run, trained=0, wall_s=1.0)
  text = (tmp_path / "summary.md").read_text()
  o = run.outcomes[3]
  assert "## Diverged models" in text and f"1 of {len(run.outcomes)} models diverged" in text
  assert (f"- round {o['round']}: {o['task'] or 'control'}, {o['size']}, {o['steps']} steps, "
          f"seed {o['seed']}, frequency {o['frequency']:.4g}: step 7") in text
  assert (numbers["models_run"], numbers["models_diverged"]) == (len(run.outcomes), 1)
  calm = report.write(design(tmp_path / "calm"), trained=0, wall_s=1.0)
  assert calm["models_diverged"] == 0
  assert "Diverged" not in (tmp_path / "calm" / "summary.md").read_text()
