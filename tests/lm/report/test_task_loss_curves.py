"""Tests of rare_tasks/lm/report/task_loss_curves.py: which cells each panel draws, in which
order, and the figure the section lists."""

from rare_tasks.lm import grid
from rare_tasks.lm.report import task_loss_curves
from tests.lm.report.conftest import injection_config, injection_run


def _config():
  c = injection_config()
  c.grid.update(dict(gap=(1, 4), seed=(0, 1), task=("comparison", "addition")))
  c.injection.schedule = "bursts"
  return c


def test_lines_by_frequency_fall_in_frequency_at_the_first_gap_and_end_with_the_control():
  c = _config()
  cells = grid.cells(c)["cpu_d16"]
  lines = task_loss_curves.panel_lines(c, cells, "comparison", "frequency", None)
  assert [label for label, _ in lines] == ["0.01", "0.004", "0.001", "control (0)"]
  assert all(cell.seed == 0 for _, cell in lines)  # the first seed's cells only
  assert all(cell.gap == 1 and cell.tasks == ("comparison",) for _, cell in lines[:-1])
  assert lines[-1][1].is_control


def test_lines_by_gap_rise_in_gap_at_one_frequency():
  c = _config()
  cells = grid.cells(c)["cpu_d64"]
  lines = task_loss_curves.panel_lines(c, cells, "addition", "gap", 0.004)
  assert [label for label, _ in lines] == ["gap 1", "gap 4", "control (0)"]
  assert all(cell.frequency == 0.004 and "addition" in cell.tasks for _, cell in lines[:-1])


def test_the_section_draws_the_tasks_loss_curves(tmp_path):
  (tmp_path / "figures").mkdir()
  section = task_loss_curves.section(injection_run(wd=tmp_path), "comparison")
  assert section.files == ("figures/task_loss_comparison.png",) and section.lines == []
  assert (tmp_path / "figures/task_loss_comparison.png").read_bytes()[:4] == b"\x89PNG"
