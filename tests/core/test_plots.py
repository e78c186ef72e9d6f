"""Tests of rare_tasks/core/plots.py: heatmap edges, task colours, a width axis saved to PNG."""

import numpy as np
import pytest

from rare_tasks.core import disk, plots
from tests import full_disk


def test_heatmap_edges_are_geometric_midpoints():
  np.testing.assert_allclose(plots.edges(np.array([1, 4, 16])), [0.5, 2, 8, 32])
  np.testing.assert_allclose(plots.edges(np.array([10.0])), np.exp(np.log(10) + [-0.5, 0.5]))


def test_task_colours_go_from_dark_to_light():
  colors = plots.task_colors(4)
  assert colors.shape == (4, 4)
  assert colors[0, :3].sum() < colors[-1, :3].sum()


def test_a_width_axis_is_log2_ticked_at_the_widths(tmp_path):
  fig, ax = plots.plt.subplots()
  widths = np.array([4, 16, 64])
  ax.plot(widths, [1, 2, 3])
  plots.width_axis(ax, widths)
  assert ax.get_xscale() == "log"
  assert [t.get_text() for t in ax.get_xticklabels()] == ["4", "16", "64"]
  plots.save(fig, tmp_path / "w.png")
  assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"
  assert not plots.plt.get_fignums()


def test_a_figure_saved_on_a_full_disk_keeps_the_old_one_and_leaves_no_tmp(tmp_path,
                                                                            monkeypatch):
  path = tmp_path / "figures" / "w.png"
  path.parent.mkdir()
  path.write_bytes(b"old figure")
  full_disk.fill_path_writes(monkeypatch, lambda p: p.name.endswith(".tmp"))
  fig, ax = plots.plt.subplots()
  ax.plot([1, 2], [3, 4])
  with pytest.raises(disk.DiskFull, match=f"cannot write {path}: no space left on the device"):
    plots.save(fig, path)
  assert path.read_bytes() == b"old figure" and [p.name for p in path.parent.iterdir()] == ["w.png"]
  assert not plots.plt.get_fignums()  # freed all the same


def test_a_log_axis_with_nothing_positive_to_show_is_drawn_linear(tmp_path):
  fig, (a, b) = plots.plt.subplots(1, 2)
  a.plot([1.0, 2.0], [np.nan, np.nan])  # every model diverged
  a.set_xscale("log")
  a.set_yscale("log")
  b.plot([1.0, 10.0], [0.5, np.nan])  # a gap: stays log
  b.set_xscale("log")
  plots.tight(fig)
  assert (a.get_xscale(), a.get_yscale(), b.get_xscale()) == ("linear", "linear", "log")
  plots.save(fig, tmp_path / "f.png")
  assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
