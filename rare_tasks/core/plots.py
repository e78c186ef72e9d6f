"""What the PNG figures share: an off-screen backend, axes over width, task colours, saving.

Importing this module selects matplotlib's Agg backend, so figures draw without a screen.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["edges", "save", "task_colors", "width_axis", "plt"]


def edges(values: np.ndarray) -> np.ndarray:
  """Cell edges at geometric midpoints, for a log-scaled pcolormesh."""
  v = np.log(np.asarray(values, float))
  if len(v) == 1:
    return np.exp(np.array([v[0] - 0.5, v[0] + 0.5]))
  mids = (v[1:] + v[:-1]) / 2
  return np.exp(np.concatenate([[2 * v[0] - mids[0]], mids, [2 * v[-1] - mids[-1]]]))


def task_colors(num_tasks: int) -> np.ndarray:
  """One blue per task, darkest first (RGBA, (K, 4))."""
  return plt.cm.Blues(np.linspace(0.95, 0.35, num_tasks))


def width_axis(ax, widths: np.ndarray, label: str = "width N") -> None:
  """A log2 x axis ticked at the widths of a grid."""
  ax.set_xscale("log", base=2)
  ax.set_xticks(widths, [str(int(w)) for w in widths])
  ax.set_xlabel(label)


def save(fig, path: Path, dpi: int = 110) -> None:
  """Writes the figure to `path` and frees it."""
  fig.savefig(path, dpi=dpi)
  plt.close(fig)
