"""interference.csv, interference.npz and their figures: per-task gradient interference
(rare_tasks.analysis.interference), per cell and evaluation (measure.interference)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from rare_tasks.analysis import interference
from rare_tasks.core import tables, workdir
from rare_tasks.core.plots import plt, save, width_axis
from rare_tasks.core.report import Section, fmt
from rare_tasks.core.tables import number
from rare_tasks.synthetic.report.results_view import GridResults, cell_key

INTERFERENCE_FILE = "interference.csv"
MATRICES_FILE = "interference.npz"
FIGURES = ("figures/interference_matrices.png", "figures/common_grad_norm.png",
           "figures/common_grad_strength.png", "figures/overwrite.png")
FILES = (INTERFERENCE_FILE, MATRICES_FILE) + FIGURES
COLUMNS = ("width", "rare_frequency", "seed", "step", "common_grad_norm", "common_grad_strength",
           "rare_grad_norm", "common_rare_cosine", "rare_overwrite", "gap", "cell")
_SCALARS = ("common_grad_norm", "rare_grad_norm", "common_rare_cosine", "rare_overwrite")


def applies(run: GridResults) -> bool:
  return run.config.measure.interference


def _write_tables(run: GridResults) -> tuple[list[dict], list[int], list]:
  """interference.csv (scalars) and interference.npz (matrices); returns the rows, the steps
  and per cell the cosine matrices at every step."""
  cells = run.cells
  rows, cos, norms = [], [], []
  steps = sorted({r["step"] for c in cells for r in run.by_cell[c.index]})
  for c in cells:
    recs = {r["step"]: r for r in run.by_cell[c.index]}
    cos.append([np.array(recs[s]["cosine"], dtype=float) for s in steps])
    norms.append([np.array(recs[s]["grad_norm"], dtype=float) for s in steps])
    strength = interference.gradient_strength(
        [number(recs[s]["common_grad_norm"]) for s in steps])
    for s, g in zip(steps, strength.tolist()):
      rows.append({**cell_key(c), "step": s, "common_grad_strength": g,
                   **{k: number(recs[s][k]) for k in _SCALARS}})
  tables.write_csv(run.wd / INTERFERENCE_FILE, COLUMNS, rows)
  buf = io.BytesIO()
  np.savez(buf, cell=np.array([c.index for c in cells]), step=np.array(steps),
           width=np.array([c.values["width"] for c in cells]),
           rare_frequency=np.array([c.values["rare_frequency"] for c in cells]),
           seed=np.array([c.values["seed"] for c in cells]),
           gap=np.array([c.values["gap"] for c in cells]),
           cosine=np.array(cos), grad_norm=np.array(norms))
  workdir.write_bytes(run.wd / MATRICES_FILE, buf.getvalue())
  return rows, steps, cos


def section(run: GridResults) -> Section:
  rows, steps, cos = _write_tables(run)
  cells = run.cells
  widths = sorted({c.values["width"] for c in cells})
  freqs = sorted({c.values["rare_frequency"] for c in cells})
  f_show = freqs[len(freqs) // 2]
  norm_by = tables.mean_by([r for r in rows if r["rare_frequency"] == f_show],
                           ("width", "step"), "common_grad_norm")
  curves = {w: (np.array(steps), np.array([norm_by[(w, s)] for s in steps])) for w in widths}
  final_norm = [norm_by[(w, steps[-1])] for w in widths]
  trained = [r for r in rows if r["step"] > 0]
  over = tables.mean_by(trained, ("rare_frequency", "width"), "rare_overwrite")
  overwrite = {f: np.array([over[(f, w)] for w in widths]) for f in freqs}
  cosine = tables.mean_by(trained, ("rare_frequency", "width"), "common_rare_cosine")
  shown = [run.cell_at(width=w, rare_frequency=f_show) for w in (widths[0], widths[-1])]
  picks = sorted({steps[min(i, len(steps) - 1)] for i in (1, len(steps) // 3, len(steps) - 1)})
  matrices = {f"width {c.values['width']}": [(s, cos[cells.index(c)][steps.index(s)])
                                             for s in picks] for c in shown}
  averaged = run.averaged_over()
  matrices_figure(run.figure("interference_matrices.png"), matrices, sorted(run.task.rare_tasks),
                  f"rare frequency {f_show:g}, seed {shown[0].values['seed']}")
  norms_figure(run.figure("common_grad_norm.png"), curves,
               f"rare frequency {f_show:g}, {averaged}")
  overwrite_figure(run.figure("overwrite.png"), np.array(widths), overwrite)
  final = [r for r in rows if r["step"] == steps[-1]]
  strength_by = tables.mean_by(final, ("rare_frequency", "width"), "common_grad_strength")
  strength = {f: np.array([strength_by[(f, w)] for w in widths]) for f in freqs}
  uncaptured = _uncaptured(run, freqs, widths)
  strength_figure(run.figure("common_grad_strength.png"), np.array(widths), strength,
                  uncaptured, f"step {steps[-1]}, {averaged}")
  falls = all(a > b for a, b in zip(final_norm, final_norm[1:]))
  lines = [
      "## Gradient interference", "",
      f"Common-task gradient norm at step {steps[-1]} (rare frequency {f_show:g}, {averaged}): "
      + ", ".join(f"width {w}: {fmt(v)}" for w, v in zip(widths, final_norm)) +
      f". Falls with every step up in width: {falls}.",
      "Overwrite (first-order change of the rare loss caused by the common tasks' part of an "
      "optimiser step, mean over the evaluations after step 0; positive raises the rare loss): "
      + ", ".join(f"width {w}: {fmt(v)}" for w, v in zip(widths, overwrite[f_show])) + ".",
      "Cosine between the common-task and the rare-task gradient (same mean; negative: the "
      "common tasks pull against the rare one): " +
      ", ".join(f"width {w}: {fmt(cosine[(f_show, w)])}" for w in widths) + ".", ""]
  lines += _strength_lines(run, widths, freqs, strength, uncaptured, steps[-1], averaged)
  for name, label in zip(FIGURES, ("interference matrices", "common gradient norm",
                                   "common gradient strength", "overwrite")):
    lines += [f"![{label}]({name})", ""]
  return Section(lines, {}, FILES)


def _uncaptured(run: GridResults, freqs: list[float],
                widths: list[int]) -> dict[float, np.ndarray] | None:
  """Per rare frequency, the closed form's share of the common tasks' utility that the optimum
  of each width leaves uncaptured, sum of pi_k lambda_kj over the common features it does not
  keep / over all common features (NaN-free; None for a family without closed form)."""
  if run.predictions is None:
    return None
  rare = list(run.task.rare_tasks)
  out = {}
  for f in freqs:
    values = []
    for w in widths:
      p = run.predictions[run.cell_at(width=w, rare_frequency=f).index]
      common = np.delete(p.utilities, rare, axis=0)
      kept = np.delete(p.kept, rare, axis=0)
      values.append(float((common * ~kept).sum() / common.sum()))
    out[f] = np.array(values)
  return out


def falling_run(widths: list[int], values: np.ndarray) -> tuple[int, int]:
  """(first, last) index of the longest run of consecutive widths over which `values` falls
  strictly at every step up (the first such run on ties; (0, 0) when none falls)."""
  best, start = (0, 0), 0
  for i in range(1, len(values) + 1):
    if i == len(values) or not values[i] < values[i - 1]:
      if i - 1 - start > best[1] - best[0]:
        best = (start, i - 1)
      start = i
  return best


def _strength_lines(run: GridResults, widths: list[int], freqs: list[float],
                    strength: dict[float, np.ndarray],
                    uncaptured: dict[float, np.ndarray] | None, step: int,
                    averaged: str) -> list[str]:
  """The table of the end-of-training gradient strength beside the closed form, and where it
  falls with width below full rank."""
  full_rank = run.task.input_dim
  capture = None
  if "feature_capture" in run.task.extra_metric_names:
    rare_rows = [r for r in run.rows if r["is_rare"]]
    capture = tables.mean_by(rare_rows, ("rare_frequency", "width"), "feature_capture")
  head = "| width | " + " | ".join(
      f"strength (f={f:g})" + (" | uncaptured common utility" if uncaptured else "")
      + (" | rare feature capture" if capture else "") for f in freqs) + " |"
  lines = [f"Common-task gradient strength at step {step} (`common_grad_strength`: the "
           "common-task gradient norm relative to its largest value so far in the same cell, "
           f"so every width is measured against itself; {averaged})"
           + (", beside the closed form's share of the common tasks' utility that the optimum "
              "of the width leaves uncaptured" if uncaptured else "") + ":", "", head,
           "|---|" + "---|" * (head.count("|") - 2)]
  for i, w in enumerate(widths):
    cells = []
    for f in freqs:
      cells.append(fmt(strength[f][i]))
      if uncaptured:
        cells.append(fmt(uncaptured[f][i]))
      if capture:
        cells.append(fmt(capture[(f, w)]))
    lines.append(f"| {w} | " + " | ".join(cells) + " |")
  lines.append("")
  below = [i for i, w in enumerate(widths) if w < full_rank]
  for f in freqs:
    values = strength[f][below]
    if len(values) < 2:
      continue
    lo, hi = falling_run([widths[i] for i in below], values)
    top = int(np.nanargmax(values)) if np.isfinite(values).any() else 0
    if hi > lo:
      ratio = values[hi] / values[lo] if values[lo] > 0 else float("nan")
      lines.append(
          f"- Rare frequency {f:g}: below full rank (width < {full_rank}) the strength falls "
          f"with every step up in width over {hi - lo + 1} widths, {widths[below[lo]]} to "
          f"{widths[below[hi]]} ({fmt(values[lo])} to {fmt(values[hi])}, {fmt(ratio)} of "
          f"it); the widest width below full rank, {widths[below[-1]]}, keeps "
          f"{fmt(values[-1] / values[top])} of the largest value below full rank "
          f"({fmt(values[top])}, width {widths[below[top]]}).")
    else:
      lines.append(f"- Rare frequency {f:g}: below full rank (width < {full_rank}) the strength "
                   "does not fall from any width to the next.")
  return lines + [""]


def matrices_figure(path: Path, matrices: dict[str, list[tuple[int, np.ndarray]]],
                    rare: list[int], subtitle: str) -> None:
  """Cosine matrices of per-task gradients at a few steps, a row per model."""
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
  fig.suptitle(f"gradient interference, {subtitle}", fontsize=10)
  save(fig, path, dpi=100)


def norms_figure(path: Path, curves: dict[int, tuple[np.ndarray, np.ndarray]],
                 subtitle: str) -> None:
  """Common-task gradient norm against step, a line per width."""
  fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(curves)))
  for color, (w, (steps, norms)) in zip(colors, sorted(curves.items())):
    keep = steps > 0
    ax.plot(steps[keep], norms[keep], color=color, marker="o", ms=3, label=f"width {w}")
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("common-task gradient norm")
  ax.legend(fontsize=8)
  ax.set_title(f"common-task gradient, {subtitle}", fontsize=9)
  save(fig, path)


def strength_figure(path: Path, widths: np.ndarray, strength: dict[float, np.ndarray],
                    uncaptured: dict[float, np.ndarray] | None, subtitle: str) -> None:
  """The end-of-training common-task gradient strength against width, a line per rare
  frequency, with the closed form's uncaptured common utility dashed beside it."""
  fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
  for color, (f, values) in zip(plt.cm.tab10.colors, sorted(strength.items())):
    ax.plot(widths, values, marker="o", color=color, label=f"measured, rare frequency {f:g}")
    if uncaptured:
      ax.plot(widths, uncaptured[f], ls="--", marker=".", color=color, alpha=0.7,
              label=f"closed form: uncaptured common utility, {f:g}")
  width_axis(ax, widths, "encoder width N")
  ax.set_yscale("log")
  ax.set_ylabel("common-task gradient / its peak (share)")
  ax.legend(fontsize=7)
  ax.set_title(f"common-task gradient strength, {subtitle}", fontsize=9)
  save(fig, path)


def overwrite_figure(path: Path, widths: np.ndarray, overwrite: dict[float, np.ndarray]) -> None:
  """Overwrite of the rare task against width, a line per rare frequency."""
  fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
  for f, values in sorted(overwrite.items()):
    ax.plot(widths, values, marker="o", label=f"rare frequency {f:g}")
  ax.axhline(0, color="k", lw=0.6)
  width_axis(ax, widths, "encoder width N")
  ax.set_yscale("symlog", linthresh=max(1e-8, float(np.nanmin(np.abs(
      np.concatenate(list(overwrite.values())) + 1e-30)))))
  ax.set_ylabel("rare-loss change from one common-task step")
  ax.legend(fontsize=8)
  ax.set_title("overwrite of the rare task (mean over evaluations after step 0)", fontsize=9)
  save(fig, path)
