"""PNG figures of a grid study: the width x frequency map, per-task learning curves, and the
final loss of every task against its frequency."""

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
                       measured: np.ndarray, predicted: np.ndarray | None,
                       critical_curve: tuple[np.ndarray, np.ndarray] | None, learned_fvu: float,
                       title: str, metric: str = "FVU") -> None:
  """Rare-task loss over (width, frequency), measured beside predicted (when there is a closed
  form), critical width drawn.

  measured, predicted: shape (len(widths), len(frequencies)); critical_curve: (frequencies,
  critical widths) on a fine grid.
  """
  panels = [(measured, "measured")]
  if predicted is not None:
    panels.append((predicted, "closed-form optimum"))
  fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 0.5, 4.5), sharey=True,
                           constrained_layout=True, squeeze=False)
  axes = axes[0]
  fx, fy = _edges(frequencies), _edges(widths)
  for ax, (data, name) in zip(axes, panels):
    mesh = ax.pcolormesh(fx, fy, data, cmap="viridis_r", vmin=0, vmax=1)
    for i, w in enumerate(widths):
      for j, f in enumerate(frequencies):
        value = data[i, j]
        ax.text(f, w, f"{value:.2f}", ha="center", va="center", fontsize=7,
                color="white" if value > 0.5 else "black",
                fontweight="bold" if value <= learned_fvu else "normal")
    if critical_curve is not None:
      cf, cw = critical_curve
      ax.step(cf, cw, where="post", color="red", lw=2,
              label="critical width (top rare feature kept)")
    ax.set_xscale("log")
    ax.set_yscale("log", base=2)
    ax.set_xlim(fx[0], fx[-1])
    ax.set_ylim(fy[0], fy[-1])
    ax.set_yticks(widths, [str(w) for w in widths])
    ax.set_xlabel("rare-task frequency")
    ax.set_title(f"rare-task {metric}, {name}")
  axes[0].set_ylabel("width N")
  if critical_curve is not None:
    axes[0].legend(loc="lower left", fontsize=8)
  fig.colorbar(mesh, ax=list(axes), label=f"{metric} (bold: learned, <= {learned_fvu})")
  fig.suptitle(title)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def learning_curves(path: Path, curves: dict[int, dict[str, Any]], rare_tasks: set[int],
                    title: str, metric: str = "FVU") -> None:
  """Per-task loss against step, one panel per width.

  curves: width -> {"steps": (T,), "fvu": (T, K), "predicted": (K,) or None, "label": str}.
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
      if c["predicted"] is not None:
        ax.axhline(c["predicted"][k], color="red" if rare else colors[k], ls=":", lw=0.8)
    ax.set_title(f"width {w}: {c['label']}")
    ax.set_xlabel("step")
    ax.set_ylim(-0.02, 1.1)
  has_prediction = any(curves[w]["predicted"] is not None for w in widths)
  axes[0][0].set_ylabel(f"{metric} (dotted: closed-form optimum)" if has_prediction else metric)
  axes[0][0].legend(fontsize=8)
  fig.suptitle(title)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def loss_by_task_frequency(path: Path, frequencies: np.ndarray, losses: dict[int, np.ndarray],
                           learned_fvu: float, title: str, metric: str) -> None:
  """Final per-task loss against the task's frequency, one line per width: tasks are learned
  from the most frequent down, and a wider model reaches rarer ones.

  frequencies: (K,); losses: width -> (K,).
  """
  order = np.argsort(-np.asarray(frequencies))
  fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(losses)))
  for color, w in zip(colors, sorted(losses)):
    ax.plot(np.asarray(frequencies)[order], np.asarray(losses[w])[order], marker="o", ms=3,
            color=color, label=f"width {w}")
  ax.axhline(learned_fvu, color="k", ls=":", lw=0.8, label="learned threshold")
  ax.set_xscale("log")
  ax.invert_xaxis()
  ax.set_xlabel("task frequency (most frequent on the left)")
  ax.set_ylabel(metric)
  ax.set_ylim(-0.02, 1.1)
  ax.legend(fontsize=8)
  ax.set_title(title, fontsize=9)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def mixture_design(path: Path, widths: np.ndarray, measured: np.ndarray, low: np.ndarray,
                   high: np.ndarray, predicted: tuple[np.ndarray, np.ndarray] | None,
                   slope: float, title: str) -> None:
  """Frequency a width needs, log-log: measured median with its interval over seeds, the
  fitted power law, and the closed form on a fine width grid (when there is one).

  widths, measured, low, high: (W,); predicted: (widths, frequencies) on a fine grid.
  """
  fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
  ok = np.isfinite(measured)
  lo = np.where(np.isfinite(low), low, measured)
  hi = np.where(np.isfinite(high), high, measured)
  # exp(median(log)) of one seed differs from it by rounding: clip the bars at zero.
  ax.errorbar(widths[ok], measured[ok], yerr=[np.maximum(measured[ok] - lo[ok], 0),
                                              np.maximum(hi[ok] - measured[ok], 0)],
              fmt="o", color="C0", capsize=3, label="measured (median; range over seeds)")
  if ok.sum() >= 2 and np.isfinite(slope):
    intercept = np.mean(np.log(measured[ok]) - slope * np.log(widths[ok]))
    ax.plot(widths, np.exp(intercept) * widths ** slope, color="C0", ls="--", lw=1,
            label=f"fit: slope {slope:.2f}")
  if predicted is not None:
    ax.step(predicted[0], predicted[1], where="post", color="red", lw=1.5,
            label="closed-form critical frequency")
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xticks(widths, [str(int(w)) for w in widths])
  ax.set_xlabel("width N")
  ax.set_ylabel("smallest rare-task frequency learned")
  ax.legend(fontsize=8)
  ax.set_title(title, fontsize=9)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def scaling(path: Path, entry: dict[str, Any], result: dict[str, Any], learned_fvu: float,
            title: str) -> None:
  """The phenomenological picture on a run: total loss against width with its power-law fit,
  the closed form (when there is one), and the regions reachable by data scaling (above the
  small model's loss) and only by model scaling (between the small and the large model's loss);
  beside it, every task's loss and fit (solid: needs model scaling, dotted: data scaling).

  entry: one setting of scaling_fit.json; result: the whole file (widths, epsilon).
  """
  widths = np.asarray(entry["widths"], float)
  fine = np.geomspace(widths.min(), widths.max(), 200)
  law = lambda f: f["l0"] + f["a"] * fine ** -f["alpha"]  # noqa: E731
  fig, (a0, a1) = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
  total = entry["total"]
  a0.plot(widths, total["measured_mean"], "o", color="k", label="measured (mean over seeds)")
  f, iv = total["fit"], total["interval"]["alpha"]
  if np.isfinite(f["alpha"]):
    a0.plot(fine, law(f), color="C0", label=f"fit: L0 {f['l0']:.3g} + {f['a']:.3g} "
            f"N^-{f['alpha']:.2f} (alpha {iv[0]:.2f}..{iv[1]:.2f})")
    reg = total["regions"]
    top = max(np.nanmax(total["measured_mean"]), reg["loss_small"]) * 1.05
    a0.axhspan(reg["loss_small"], top, color="C2", alpha=0.12,
               label=f"reachable by data scaling (width {reg['small_width']})")
    a0.axhspan(reg["loss_large"], reg["loss_small"], color="C3", alpha=0.15,
               label=f"only by model scaling (width {reg['large_width']})")
    a0.axhline(f["l0"], color="C0", ls=":", lw=0.8)
  if "closed_form" in entry:
    cf = entry["closed_form"]
    a0.step(cf["widths"], cf["total"], where="post", color="red", lw=1,
            label="closed form (exact, from the spectrum)")
  a0.set_xscale("log", base=2)
  a0.set_xlim(widths.min() / 1.2, widths.max() * 1.2)
  a0.set_xlabel("width N")
  a0.set_ylabel(f"total {result['metric']} (sum_k pi_k loss_k)")
  a0.legend(fontsize=7)
  a0.set_title("total loss", fontsize=9)
  freqs = np.asarray(entry["task_frequency"])
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(freqs)))[np.argsort(np.argsort(-freqs))]
  for t in entry["tasks"]:
    k = t["task"]
    a1.plot(widths, t["measured_mean"], "o", ms=3, color=colors[k])
    if np.isfinite(t["fit"]["alpha"]):
      a1.plot(fine, law(t["fit"]), color=colors[k], lw=1,
              ls="-" if t["learnable_via"] == "model scaling" else ":",
              label=f"task {k} (pi {freqs[k]:.2g})")
  a1.axhline(learned_fvu, color="k", ls="--", lw=0.6)
  a1.set_xscale("log", base=2)
  a1.set_xlabel("width N")
  a1.set_ylabel(result["metric"])
  a1.legend(fontsize=6, ncol=2)
  a1.set_title(f"per task (solid: gap small - large > epsilon {result['epsilon']}, needs model "
               "scaling)", fontsize=9)
  fig.suptitle(title, fontsize=10)
  fig.savefig(path, dpi=110)
  plt.close(fig)
