"""Tests of rare_tasks/lm/report/heatmaps.py: the section draws the task's heatmap and lists it,
and draws nothing on a process that does not write."""

from rare_tasks.core import workdir
from rare_tasks.lm.report import heatmaps
from tests.lm.report.conftest import injection_run


def test_the_section_draws_the_tasks_heatmap(tmp_path):
  (tmp_path / "figures").mkdir()
  section = heatmaps.section(injection_run(wd=tmp_path), "comparison")
  assert section.files == ("figures/heatmap_comparison.png",) and section.lines == []
  assert (tmp_path / "figures/heatmap_comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_a_process_that_does_not_write_lists_the_figure_without_drawing_it(tmp_path,
                                                                            monkeypatch):
  (tmp_path / "figures").mkdir()
  monkeypatch.setattr(workdir, "is_writer", lambda: False)
  section = heatmaps.section(injection_run(wd=tmp_path), "comparison")
  assert section.files == ("figures/heatmap_comparison.png",)
  assert not list((tmp_path / "figures").iterdir())
