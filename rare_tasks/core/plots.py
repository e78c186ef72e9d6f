"""What the PNG figures share: an off-screen backend, axes over width, task colours, saving
(atomically, through the work directory's writer).

Importing this module selects matplotlib's Agg backend, so figures draw without a screen.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rare_tasks.core import workdir  # noqa: E402

__all__ = ["edges", "loggable", "save", "task_colors", "tight", "width_axis", "plt"]


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


def loggable(fig) -> None:
  """Sets a log-scaled axis linear where it has no positive finite data to show (every model
  diverged: all NaN; or nothing above zero), which matplotlib cannot draw on a log scale; the
  figure is then drawn, with its gaps, instead of failing."""
  for ax in fig.axes:
    for name, interval in (("x", ax.dataLim.intervalx), ("y", ax.dataLim.intervaly)):
      scale = ax.get_xscale() if name == "x" else ax.get_yscale()
      if scale == "log" and not (np.all(np.isfinite(interval)) and interval[1] > 0):
        (ax.set_xscale if name == "x" else ax.set_yscale)("linear")


def tight(fig) -> None:
  """fig.tight_layout(), after `loggable` (laying out draws the ticks, which fails on a log
  axis with nothing to show)."""
  loggable(fig)
  fig.tight_layout()


def save(fig, path: Path, dpi: int = 110) -> None:
  """Writes the figure to `path` (in the format its suffix names) and frees it. The file is
  written whole or not at all: a full disk is DiskFull naming `path`, the old figure kept."""
  buf = io.BytesIO()
  try:
    loggable(fig)
    fig.savefig(buf, dpi=dpi, format=Path(path).suffix.lstrip(".") or None)
  finally:
    plt.close(fig)
  workdir.write_bytes(Path(path), buf.getvalue())
