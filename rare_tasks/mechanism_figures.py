"""PNG figures of the mechanism measurements: allocation, interference, retention, order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _task_colors(num_tasks: int) -> np.ndarray:
  return plt.cm.Blues(np.linspace(0.95, 0.35, num_tasks))


def allocation(path: Path, widths: np.ndarray, effective: np.ndarray,
               critical_width: np.ndarray | None, rare: list[int], title: str) -> None:
  """Effective neurons per task against width: effective (W, K); critical_width (K,) or None."""
  fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
  colors = _task_colors(effective.shape[1])
  for k in range(effective.shape[1]):
    is_rare = k in rare
    ax.plot(widths, effective[:, k], marker="o", ms=3, lw=2.2 if is_rare else 1.0,
            color="red" if is_rare else colors[k], label=f"rare task {k}" if is_rare else None)
    if is_rare and critical_width is not None:
      ax.axvline(critical_width[k], color="red", ls=":", lw=1,
                 label=f"critical width of task {k} ({int(critical_width[k])})")
  ax.set_xscale("log", base=2)
  ax.set_yscale("symlog", linthresh=0.1)
  ax.set_ylim(bottom=0)
  ax.set_xticks(widths, [str(w) for w in widths])
  ax.set_xlabel("width N")
  ax.set_ylabel("effective neurons (sum of shares)")
  ax.legend(fontsize=8)
  ax.set_title(title, fontsize=9)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def interference(folder: Path, matrices: dict[str, list[tuple[int, np.ndarray]]],
                 norm_curves: dict[int, tuple[np.ndarray, np.ndarray]], widths: np.ndarray,
                 overwrite: dict[float, np.ndarray], rare: list[int], subtitle: str,
                 matrices_subtitle: str) -> None:
  """Three figures: cosine matrices at a few steps (a row per model), common-task gradient norm
  against step per width, and overwrite against width per rare frequency."""
  rows = list(matrices)
  cols = max(len(v) for v in matrices.values())
  fig, axes = plt.subplots(len(rows), cols, figsize=(3.2 * cols, 3.0 * len(rows)),
                           constrained_layout=True, squeeze=False)
  for i, name in enumerate(rows):
    for j, (step, cos) in enumerate(matrices[name]):
      ax = axes[i][j]
      im = ax.imshow(np.nan_to_num(cos, nan=0.0), cmap="RdBu_r", vmin=-1, vmax=1)
      ax.set_title(f"{name}, step {step}", fontsize=9)
      ticks = range(0, cos.shape[0], max(1, cos.shape[0] // 4))
      ax.set_xticks(ticks)
      ax.set_yticks(ticks)
      for r in rare:
        ax.axhline(r, color="k", lw=0.5, ls=":")
        ax.axvline(r, color="k", lw=0.5, ls=":")
      ax.set_xlabel("task")
      ax.set_ylabel("task")
  fig.colorbar(im, ax=axes, label="cosine of per-task gradients (shared parameters)")
  fig.suptitle(f"gradient interference, {matrices_subtitle}", fontsize=10)
  fig.savefig(folder / "interference_matrices.png", dpi=100)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(norm_curves)))
  for color, (w, (steps, norms)) in zip(colors, sorted(norm_curves.items())):
    keep = steps > 0
    ax.plot(steps[keep], norms[keep], color=color, marker="o", ms=3, label=f"width {w}")
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("common-task gradient norm")
  ax.legend(fontsize=8)
  ax.set_title(f"common-task gradient, {subtitle}", fontsize=9)
  fig.savefig(folder / "common_grad_norm.png", dpi=110)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
  for f, values in sorted(overwrite.items()):
    ax.plot(widths, values, marker="o", label=f"rare frequency {f:g}")
  ax.axhline(0, color="k", lw=0.6)
  ax.set_xscale("log", base=2)
  ax.set_yscale("symlog", linthresh=max(1e-8, float(np.nanmin(np.abs(
      np.concatenate(list(overwrite.values())) + 1e-30)))))
  ax.set_xticks(widths, [str(w) for w in widths])
  ax.set_xlabel("encoder width N")
  ax.set_ylabel("rare-loss change from one common-task step")
  ax.legend(fontsize=8)
  ax.set_title("overwrite of the rare task (mean over evaluations after step 0)", fontsize=9)
  fig.savefig(folder / "overwrite.png", dpi=110)
  plt.close(fig)


def retention(folder: Path, curves: dict[int, dict[str, np.ndarray]], widths: np.ndarray,
              gaps: np.ndarray, retained: np.ndarray, subtitle: str) -> None:
  """The rare signal against step around bursts, a panel per width, and the retained fraction
  over width x gap (retained: (W, G))."""
  fig, axes = plt.subplots(len(curves), 1, figsize=(9, 1.9 * len(curves)), sharex=True,
                           constrained_layout=True, squeeze=False)
  for ax, w in zip(axes[:, 0], sorted(curves)):
    c = curves[w]
    signal, bursts = c["signal"], c["bursts"]
    ax.plot(np.arange(len(signal)), signal, color="C3", lw=1)
    for b in bursts:
      ax.axvline(b, color="gray", lw=0.4, alpha=0.5)
    ax.set_ylabel(f"width {w}\ncapture", fontsize=8)
    ax.set_ylim(-0.02, 1.02)
  axes[-1, 0].set_xlabel("update (gray: bursts)")
  fig.suptitle(f"rare-task feature capture around bursts, {subtitle}", fontsize=10)
  fig.savefig(folder / "retention_traces.png", dpi=110)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(1.4 * len(gaps) + 3, 0.6 * len(widths) + 2.5),
                         constrained_layout=True)
  im = ax.imshow(retained, cmap="viridis", vmin=0, vmax=1, origin="lower", aspect="auto")
  for i in range(len(widths)):
    for j in range(len(gaps)):
      v = retained[i, j]
      ax.text(j, i, "nan" if not np.isfinite(v) else f"{v:.2f}", ha="center", va="center",
              color="white" if np.isfinite(v) and v < 0.5 else "black", fontsize=8)
  ax.set_xticks(range(len(gaps)), [str(g) for g in gaps])
  ax.set_yticks(range(len(widths)), [str(w) for w in widths])
  ax.set_xlabel("gap between bursts (updates)")
  ax.set_ylabel("encoder width N")
  fig.colorbar(im, ax=ax, label="retained fraction of a burst's gain")
  ax.set_title("feature capture retained until the next burst", fontsize=9)
  fig.savefig(folder / "retained_fraction.png", dpi=110)
  plt.close(fig)


def learning_order(path: Path, steps: np.ndarray, fvu: np.ndarray, rows: list[dict[str, Any]],
                   learned_fvu: float, title: str) -> None:
  """Per-task FVU against step (colour: frequency rank, line width: complexity) beside the
  measured learned step against the closed-form learned width."""
  fig, (a0, a1) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
  by_task = {r["task"]: r for r in rows}
  freqs = np.array([by_task[k]["task_frequency"] for k in range(fvu.shape[1])])
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(freqs)))[np.argsort(np.argsort(-freqs))]
  for k in range(fvu.shape[1]):
    r = by_task[k]
    a0.plot(steps, fvu[:, k], color=colors[k], lw=0.8 + 0.5 * r["beta"],
            label=f"task {k}: pi {r['task_frequency']:.3g}, beta {r['beta']:g}")
  a0.axhline(learned_fvu, color="k", ls=":", lw=0.8)
  a0.set_xlabel("step")
  a0.set_ylabel("FVU")
  a0.set_ylim(-0.02, 1.05)
  a0.legend(fontsize=6, ncol=2)
  a0.set_title(f"per-task FVU ({title}); dotted: learned threshold", fontsize=9)
  for k in range(fvu.shape[1]):
    r = by_task[k]
    if np.isfinite(r["learned_step"]):
      a1.scatter(r["predicted_learned_width"], r["learned_step"], color=colors[k], s=30)
      a1.annotate(str(k), (r["predicted_learned_width"], r["learned_step"]), fontsize=8,
                  xytext=(3, 3), textcoords="offset points")
  a1.set_xlabel("closed-form width at which the optimum learns the task (utility rank)")
  a1.set_ylabel("measured first learned step")
  a1.set_title("learning order: measured against utility (colour: frequency rank)", fontsize=9)
  fig.savefig(path, dpi=110)
  plt.close(fig)
