"""The phenomenological argument (docs/science.md, "The phenomenological argument") on a grid run:
power-law fits over width.

For each setting of the grid other than width and seed (e.g. each rare frequency), the final loss
of every cell is fitted with L(N) = L0 + A N^-alpha over the width grid, with bootstrap
intervals over seeds (rare_tasks.analysis.scaling_fit): the total loss (the mixture-weighted
headline loss, sum_k pi_k loss_k: the expected normalised loss of a training example) and each
task's. Fresh examples every step make a run's final loss its width's (budget-limited)
infinite-data loss, so for a small and a large width: everything above L(small) is reachable by
data scaling (training the small model longer), the gap L(small) - L(large) only by model
scaling (the paper's figure 1), and each task is classified by whether its gap exceeds epsilon.
For a family with a closed form, the curve the spectrum implies exactly, sum_k pi_k FVU_k(N) at
the optimum, is drawn beside the fit.

Runs after a grid run with `--config.scaling.enabled=True`, or on an existing work directory
with `python -m experiments.scaling_fit --workdir=DIR`. Writes scaling_fit.json and
figures/scaling.png, and returns the summary.md section.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from rare_tasks.analysis import scaling_fit
from rare_tasks.core import workdir
from rare_tasks.core.plots import plt, save
from rare_tasks.core.report import Section
from rare_tasks.synthetic.config import ALIASES, CELL_VALUES, base_config, validate
from rare_tasks.synthetic.grid import hashable
from rare_tasks.synthetic.report import results
from rare_tasks.synthetic.report.results_view import GridResults
from rare_tasks.synthetic.tasks import TaskFamily, task_of

SCALING_FILE = "scaling_fit.json"
FIGURE = "figures/scaling.png"
FILES = (SCALING_FILE, FIGURE)


def applies(run: GridResults) -> bool:
  return run.config.scaling.enabled


def section(run: GridResults) -> Section:
  lines = write(run.config, run.wd, run.task, run.rows, {c.index: c.values for c in run.cells})
  return Section(lines, {}, FILES)


def analyse(config: ml_collections.ConfigDict, task: TaskFamily, rows: list[dict[str, Any]],
            cell_values: dict[int, dict[str, Any]]) -> dict[str, Any]:
  """The scaling fits of results rows (one per cell and task) of cells with the given grid
  values; see the module docstring.

  Returns {"settings": [...]}, one entry per setting of the non-width, non-seed grid axes.
  """
  s = config.scaling
  cells = sorted({r["cell"] for r in rows})
  # A setting: the cell's values of the grid axes, other than width and seed, that vary.
  axes = [a for a in CELL_VALUES if a not in ("width", "seed")
          and len({repr(cell_values[c].get(a)) for c in cells}) > 1]
  setting_of = {c: tuple(hashable(cell_values[c].get(a)) for a in axes) for c in cells}
  widths = np.array(sorted({r["width"] for r in rows}), float)
  seeds = sorted({r["seed"] for r in rows})
  small = s.small_width or int(widths[0])
  large = s.large_width or int(widths[-1])
  out = []
  for setting in sorted(set(setting_of.values()), key=str):
    sel = [r for r in rows if setting_of[r["cell"]] == setting]
    entry = _fit_setting(config, task, sel, widths, seeds, small, large)
    entry = {"setting": dict(zip(axes, setting)), **entry}
    if task.theory is not None:
      entry["closed_form"] = closed_form(task, cell_values[sel[0]["cell"]], widths)
    out.append(entry)
  return {"metric": task.loss_name, "small_width": small, "large_width": large,
          "epsilon": s.epsilon, "settings": out}


def _fit_setting(config: ml_collections.ConfigDict, task: TaskFamily, sel: list[dict[str, Any]],
                 widths: np.ndarray, seeds: list[int], small: int, large: int) -> dict[str, Any]:
  """The fits of one setting's rows: the total loss and every task's."""
  s = config.scaling
  per_task = np.full((task.num_tasks, len(seeds), len(widths)), np.nan)
  freq = np.zeros(task.num_tasks)
  for r in sel:
    per_task[r["task"], seeds.index(r["seed"]), int(np.searchsorted(widths, r["width"]))] = (
        r[task.loss_name])
    freq[r["task"]] = r["task_frequency"]
  total = np.einsum("k,ksw->sw", freq, per_task)

  def fit(losses):
    return scaling_fit.bootstrap_power_law(widths, losses, num_resamples=s.bootstrap_resamples,
                                           seed=config.seed)

  def law(f):
    return scaling_fit.PowerLaw(**f["fit"])

  total_fit = fit(total)
  task_fits = [fit(per_task[k]) for k in range(task.num_tasks)]
  entry = {"widths": [int(w) for w in widths], "seeds": seeds, "task_frequency": freq.tolist(),
           "total": {"measured_mean": np.nanmean(total, 0).tolist(), **total_fit,
                     "regions": _regions(law(total_fit), small, large, s.epsilon)},
           "tasks": [{"task": k, "measured_mean": np.nanmean(per_task[k], 0).tolist(), **f}
                     for k, f in enumerate(task_fits)]}
  small_k = np.array([law(f)(small) for f in task_fits])
  large_k = np.array([law(f)(large) for f in task_fits])
  ok = np.isfinite(small_k) & np.isfinite(large_k)
  labels = iter(scaling_fit.classify_tasks(small_k[ok], large_k[ok], s.epsilon))
  for k, t in enumerate(entry["tasks"]):
    t["loss_small"], t["loss_large"] = float(small_k[k]), float(large_k[k])
    t["learnable_via"] = next(labels) if ok[k] else None
  return entry


def _regions(law: scaling_fit.PowerLaw, small: int, large: int, epsilon: float) -> dict:
  if not np.isfinite(law.alpha):
    return {"small_width": small, "large_width": large, "model_scaling_gap": None}
  return scaling_fit.scaling_regions(law, small, large, epsilon)


def closed_form(task: TaskFamily, values: dict[str, Any], widths: np.ndarray) -> dict[str, Any]:
  """sum_k pi_k FVU_k(N) at the closed-form optimum on a fine width grid (and per task)."""
  fine = np.unique(np.geomspace(1, max(widths.max(), 2), 80).round().astype(int))
  return task.theory.optimum_curve(values, fine)


def write(config: ml_collections.ConfigDict, wd: Path, task: TaskFamily,
          rows: list[dict[str, Any]], cell_values: dict[int, dict[str, Any]]) -> list[str]:
  """Writes scaling_fit.json and figures/scaling.png from results rows; returns summary lines."""
  result = analyse(config, task, rows, cell_values)
  workdir.write_text(Path(wd) / SCALING_FILE,
                     json.dumps(_nan_to_null(result), indent=1) + "\n")
  shown = result["settings"][len(result["settings"]) // 2]
  figure(Path(wd) / FIGURE, shown, result, config.learned.threshold,
         f"{config.task.name}: final {result['metric']} against width "
         f"({_describe(shown['setting'])})")
  lines = ["## Scaling with width: L(N) = L0 + A N^-alpha", "",
           f"Fits of the final {result['metric']} over widths {shown['widths']}, with "
           f"{int(100 * shown['total']['level'])}% bootstrap intervals over "
           f"{len(shown['seeds'])} seed(s); small width {result['small_width']}, large width "
           f"{result['large_width']}, epsilon {result['epsilon']}.", "",
           "| setting | L0 | A | alpha (interval) | model-scaling gap L(small) - L(large) |",
           "|---|---|---|---|---|"]
  for e in result["settings"]:
    f, iv, reg = e["total"]["fit"], e["total"]["interval"], e["total"]["regions"]
    gap = reg.get("model_scaling_gap")
    lines.append(f"| {_describe(e['setting'])} | {f['l0']:.3g} | {f['a']:.3g} | "
                 f"{f['alpha']:.3g} ({iv['alpha'][0]:.3g} .. {iv['alpha'][1]:.3g}) | "
                 f"{'n/a' if gap is None else f'{gap:.3g}'} |")
  by_class: dict[str, list[int]] = {}
  for t in shown["tasks"]:
    by_class.setdefault(str(t["learnable_via"]), []).append(t["task"])
  lines += ["", f"Tasks by what closes their gap ({_describe(shown['setting'])}): " + "; ".join(
      f"{name}: {tasks}" for name, tasks in sorted(by_class.items())) + ".", "",
            f"![scaling]({FIGURE})", ""]
  return lines


def _nan_to_null(v: Any) -> Any:
  """NaN (a failed fit) as null, so the file is valid JSON."""
  if isinstance(v, dict):
    return {k: _nan_to_null(x) for k, x in v.items()}
  if isinstance(v, (list, tuple)):
    return [_nan_to_null(x) for x in v]
  if isinstance(v, float) and not np.isfinite(v):
    return None
  return v


def _describe(setting: dict[str, Any]) -> str:
  return ", ".join(f"{k} {v}" for k, v in setting.items()) or "the grid"


def write_for_workdir(wd: str | Path, overrides: dict[str, Any] | None = None) -> list[str]:
  """The scaling analysis of a finished grid run in `wd` (its config.json and results.csv),
  with config.scaling fields overridden by `overrides`; returns the summary lines."""
  wd = Path(wd)
  for name in (workdir.CONFIG_FILE, results.RESULTS_FILE):
    if not (wd / name).exists():
      raise FileNotFoundError(f"{wd} holds no finished grid run (no {name}); run the study "
                              "to the end first")
  config = workdir.load_config(wd, base_config(), aliases=ALIASES)
  if config.study != "grid":
    raise ValueError(f"{wd} holds a {config.study!r} study; scaling fits need a grid run")
  for k, v in (overrides or {}).items():
    config.scaling[k] = v
  validate(config)
  task = task_of(config)
  rows = [results.typed(r, (task.loss_name,)) for r in results.read_results(wd)]
  # Every metrics.jsonl record carries its cell's grid values.
  cell_values = {}
  for r in workdir.read_metrics(wd):
    cell_values.setdefault(r["cell"], {a: r[a] for a in CELL_VALUES})
  return write(config, wd, task, rows, cell_values)


def figure(path: Path, entry: dict[str, Any], result: dict[str, Any], learned_threshold: float,
           title: str) -> None:
  """The phenomenological picture on a run: total loss against width with its power-law fit,
  the closed form (when there is one), and the regions reachable by data scaling (above the
  small model's loss) and only by model scaling (between the small and the large model's loss);
  beside it, every task's loss and fit (solid: needs model scaling, dotted: data scaling).

  entry: one setting of scaling_fit.json; result: the whole file (widths, epsilon).
  """
  widths = np.asarray(entry["widths"], float)
  fine = np.geomspace(widths.min(), widths.max(), 200)
  fig, (a0, a1) = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
  _total_panel(a0, entry, result, widths, fine)
  _task_panel(a1, entry, result, widths, fine, learned_threshold)
  fig.suptitle(title, fontsize=10)
  save(fig, path)


def _law(fit: dict[str, float], n: np.ndarray) -> np.ndarray:
  return fit["l0"] + fit["a"] * n ** -fit["alpha"]


def _total_panel(ax, entry: dict[str, Any], result: dict[str, Any], widths: np.ndarray,
                 fine: np.ndarray) -> None:
  total = entry["total"]
  ax.plot(widths, total["measured_mean"], "o", color="k", label="measured (mean over seeds)")
  f, iv = total["fit"], total["interval"]["alpha"]
  if np.isfinite(f["alpha"]):
    ax.plot(fine, _law(f, fine), color="C0", label=f"fit: L0 {f['l0']:.3g} + {f['a']:.3g} "
            f"N^-{f['alpha']:.2f} (alpha {iv[0]:.2f}..{iv[1]:.2f})")
    reg = total["regions"]
    top = max(np.nanmax(total["measured_mean"]), reg["loss_small"]) * 1.05
    ax.axhspan(reg["loss_small"], top, color="C2", alpha=0.12,
               label=f"reachable by data scaling (width {reg['small_width']})")
    ax.axhspan(reg["loss_large"], reg["loss_small"], color="C3", alpha=0.15,
               label=f"only by model scaling (width {reg['large_width']})")
    ax.axhline(f["l0"], color="C0", ls=":", lw=0.8)
  if "closed_form" in entry:
    cf = entry["closed_form"]
    ax.step(cf["widths"], cf["total"], where="post", color="red", lw=1,
            label="closed form (exact, from the spectrum)")
  ax.set_xscale("log", base=2)
  ax.set_xlim(widths.min() / 1.2, widths.max() * 1.2)
  ax.set_xlabel("width N")
  ax.set_ylabel(f"total {result['metric']} (sum_k pi_k loss_k)")
  ax.legend(fontsize=7)
  ax.set_title("total loss", fontsize=9)


def _task_panel(ax, entry: dict[str, Any], result: dict[str, Any], widths: np.ndarray,
                fine: np.ndarray, learned_threshold: float) -> None:
  freqs = np.asarray(entry["task_frequency"])
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(freqs)))[np.argsort(np.argsort(-freqs))]
  for t in entry["tasks"]:
    k = t["task"]
    ax.plot(widths, t["measured_mean"], "o", ms=3, color=colors[k])
    if np.isfinite(t["fit"]["alpha"]):
      ax.plot(fine, _law(t["fit"], fine), color=colors[k], lw=1,
              ls="-" if t["learnable_via"] == "model scaling" else ":",
              label=f"task {k} (pi {freqs[k]:.2g})")
  ax.axhline(learned_threshold, color="k", ls="--", lw=0.6)
  ax.set_xscale("log", base=2)
  ax.set_xlabel("width N")
  ax.set_ylabel(result["metric"])
  ax.legend(fontsize=6, ncol=2)
  ax.set_title(f"per task (solid: gap small - large > epsilon {result['epsilon']}, needs model "
               "scaling)", fontsize=9)
