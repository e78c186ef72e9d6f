"""Tests of rare_tasks/core/plots.py: heatmap edges, task colours, a width axis saved to PNG."""

import numpy as np

from rare_tasks.core import plots


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
