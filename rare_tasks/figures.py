"""PNG figures of a grid study: the width x frequency map and per-task learning curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _edges(values: np.ndarray) -> np.ndarray:
  """Cell edges at geometric midpoints, for a log-scaled pcolormesh."""
  v = np.log(np.asarray(values, float))
  if len(v) == 1:
    return np.exp(np.array([v[0] - 0.5, v[0] + 0.5]))
  mids = (v[1:] + v[:-1]) / 2
  return np.exp(np.concatenate([[2 * v[0] - mids[0]], mids, [2 * v[-1] - mids[-1]]]))


def width_by_frequency(path: Path, widths: np.ndarray, frequencies: np.ndarray,
                       measured: np.ndarray, predicted: np.ndarray,
                       critical_curve: tuple[np.ndarray, np.ndarray], learned_fvu: float,
                       title: str) -> None:
  """Rare-task FVU over (width, frequency), measured beside predicted, critical width drawn.

  measured, predicted: shape (len(widths), len(frequencies)); critical_curve: (frequencies,
  critical widths) on a fine grid.
  """
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True, constrained_layout=True)
  fx, fy = _edges(frequencies), _edges(widths)
  for ax, data, name in zip(axes, (measured, predicted), ("measured", "closed-form optimum")):
    mesh = ax.pcolormesh(fx, fy, data, cmap="viridis_r", vmin=0, vmax=1)
    for i, w in enumerate(widths):
      for j, f in enumerate(frequencies):
        value = data[i, j]
        ax.text(f, w, f"{value:.2f}", ha="center", va="center", fontsize=7,
                color="white" if value > 0.5 else "black",
                fontweight="bold" if value <= learned_fvu else "normal")
    cf, cw = critical_curve
    ax.step(cf, cw, where="post", color="red", lw=2, label="critical width (top rare feature kept)")
    ax.set_xscale("log")
    ax.set_yscale("log", base=2)
    ax.set_xlim(fx[0], fx[-1])
    ax.set_ylim(fy[0], fy[-1])
    ax.set_yticks(widths, [str(w) for w in widths])
    ax.set_xlabel("rare-task frequency")
    ax.set_title(f"rare-task FVU, {name}")
  axes[0].set_ylabel("encoder width N")
  axes[0].legend(loc="lower left", fontsize=8)
  fig.colorbar(mesh, ax=axes, label=f"FVU (bold: learned, FVU <= {learned_fvu})")
  fig.suptitle(title)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def learning_curves(path: Path, curves: dict[int, dict[str, Any]], rare_tasks: set[int],
                    title: str) -> None:
  """Per-task FVU against step, one panel per width.

  curves: width -> {"steps": (T,), "fvu": (T, K), "predicted": (K,), "label": str}.
  """
  widths = sorted(curves)
  fig, axes = plt.subplots(1, len(widths), figsize=(4.2 * len(widths), 3.8), sharey=True,
                           constrained_layout=True, squeeze=False)
  for ax, w in zip(axes[0], widths):
    c = curves[w]
    num_tasks = c["fvu"].shape[1]
    colors = plt.cm.Blues(np.linspace(0.95, 0.35, num_tasks))
    for k in range(num_tasks):
      rare = k in rare_tasks
      ax.plot(c["steps"], c["fvu"][:, k], color="red" if rare else colors[k],
              lw=2.2 if rare else 1.0, label=f"rare task {k}" if rare else None)
      ax.axhline(c["predicted"][k], color="red" if rare else colors[k], ls=":", lw=0.8)
    ax.set_title(f"width {w}: {c['label']}")
    ax.set_xlabel("step")
    ax.set_ylim(-0.02, 1.1)
  axes[0][0].set_ylabel("FVU (dotted: closed-form optimum)")
  axes[0][0].legend(fontsize=8)
  fig.suptitle(title)
  fig.savefig(path, dpi=110)
  plt.close(fig)
