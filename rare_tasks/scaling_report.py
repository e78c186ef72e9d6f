"""The phenomenological argument (PAPER.md section 1) on a grid run: power-law fits over width.

For each setting of the grid other than width and seed (e.g. each rare frequency), the final loss
of every cell is fitted with L(N) = L0 + A N^-alpha over the width grid, with bootstrap
intervals over seeds (rare_tasks.scaling_fit): the total loss (the mixture-weighted headline
loss, sum_k pi_k loss_k: the expected normalised loss of a training example) and each task's.
Fresh examples every step make a run's final loss its width's (budget-limited) infinite-data
loss, so for a small and a large width: everything above L(small) is reachable by data scaling
(training the small model longer), the gap L(small) - L(large) only by model scaling (the
paper's figure 1), and each task is classified by whether its gap exceeds epsilon. For a family
with a closed form, the curve the spectrum implies exactly, sum_k pi_k FVU_k(N) at the optimum,
is drawn beside the fit.

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

from rare_tasks import figures, scaling_fit, theory, workdir
from rare_tasks.config_schema import GRID_AXES, validate
from rare_tasks.results_table import read_results
from rare_tasks.tasks import TaskFamily

# Results columns read back as numbers.
_NUMERIC = ("width", "seed", "task", "task_frequency", "rare_frequency", "cell")


def _hashable(v: Any) -> Any:
  return tuple(v) if isinstance(v, (list, tuple)) else v


def analyse(config: ml_collections.ConfigDict, task: TaskFamily, rows: list[dict[str, Any]],
            cell_values: dict[int, dict[str, Any]]) -> dict[str, Any]:
  """The scaling fits of results rows (one per cell and task) of cells with the given grid
  values; see the module docstring.

  Returns {"settings": [...]}, one entry per setting of the non-width, non-seed grid axes.
  """
  metric = task.loss_name
  s = config.scaling
  cells = sorted({r["cell"] for r in rows})
  # A setting: the cell's values of the grid axes, other than width and seed, that vary.
  axes = [a for a in GRID_AXES if a not in ("width", "seed")
          and len({repr(cell_values[c].get(a)) for c in cells}) > 1]
  setting_of = {c: tuple(_hashable(cell_values[c].get(a)) for a in axes) for c in cells}
  widths = np.array(sorted({r["width"] for r in rows}), float)
  seeds = sorted({r["seed"] for r in rows})
  small = s.small_width or int(widths[0])
  large = s.large_width or int(widths[-1])
  out = []
  for setting in sorted(set(setting_of.values()), key=str):
    sel = [r for r in rows if setting_of[r["cell"]] == setting]
    per_task = np.full((task.num_tasks, len(seeds), len(widths)), np.nan)
    freq = np.zeros(task.num_tasks)
    for r in sel:
      per_task[r["task"], seeds.index(r["seed"]), int(np.searchsorted(widths, r["width"]))] = (
          r[metric])
      freq[r["task"]] = r["task_frequency"]
    total = np.einsum("k,ksw->sw", freq, per_task)
    fit = lambda losses: scaling_fit.bootstrap_power_law(  # noqa: E731
        widths, losses, num_resamples=s.bootstrap_resamples, seed=config.seed)
    total_fit = fit(total)
    task_fits = [fit(per_task[k]) for k in range(task.num_tasks)]
    law = lambda f: scaling_fit.PowerLaw(**f["fit"])  # noqa: E731
    entry = {
        "setting": dict(zip(axes, setting)), "widths": [int(w) for w in widths],
        "seeds": seeds,
        "task_frequency": freq.tolist(),
        "total": {"measured_mean": np.nanmean(total, 0).tolist(), **total_fit,
                  "regions": _regions(law(total_fit), small, large, s.epsilon)},
        "tasks": [{"task": k, "measured_mean": np.nanmean(per_task[k], 0).tolist(), **f}
                  for k, f in enumerate(task_fits)]}
    small_k = np.array([law(f)(small) for f in task_fits])
    large_k = np.array([law(f)(large) for f in task_fits])
    ok = np.isfinite(small_k) & np.isfinite(large_k)
    classes = scaling_fit.classify_tasks(small_k[ok], large_k[ok], s.epsilon)
    labels = iter(classes)
    for k, t in enumerate(entry["tasks"]):
      t["loss_small"], t["loss_large"] = float(small_k[k]), float(large_k[k])
      t["learnable_via"] = next(labels) if ok[k] else None
    if task.has_theory:
      entry["closed_form"] = _closed_form(task, cell_values[sel[0]["cell"]], widths)
    out.append(entry)
  return {"metric": metric, "small_width": small, "large_width": large, "epsilon": s.epsilon,
          "settings": out}


def _regions(law: scaling_fit.PowerLaw, small: int, large: int, epsilon: float) -> dict:
  if not np.isfinite(law.alpha):
    return {"small_width": small, "large_width": large, "model_scaling_gap": None}
  return scaling_fit.scaling_regions(law, small, large, epsilon)


def _closed_form(task: TaskFamily, values: dict[str, Any],
                 widths: np.ndarray) -> dict[str, Any]:
  """sum_k pi_k FVU_k(N) at the closed-form optimum on a fine width grid (and per task)."""
  mixture = task.mixture(values["rare_frequency"], values["common_exponent"])
  spectrum = task.spectrum(values["beta"])
  fine = np.unique(np.geomspace(1, max(widths.max(), 2), 80).round().astype(int))
  fvu = np.stack([theory.predict(mixture, spectrum, int(n)).fvu for n in fine])
  return {"widths": fine.tolist(), "total": (fvu @ mixture).tolist(), "tasks": fvu.T.tolist()}


def write(config: ml_collections.ConfigDict, wd: Path, task: TaskFamily,
          rows: list[dict[str, Any]], cell_values: dict[int, dict[str, Any]]) -> list[str]:
  """Writes scaling_fit.json and figures/scaling.png from results rows; returns summary lines."""
  result = analyse(config, task, rows, cell_values)
  workdir.write_text(wd / "scaling_fit.json", json.dumps(_nan_to_null(result), indent=1) + "\n")
  shown = result["settings"][len(result["settings"]) // 2]
  figures.scaling(wd / "figures" / "scaling.png", shown, result, config.learned_fvu,
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
            "![scaling](figures/scaling.png)", ""]
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


def _typed(row: dict[str, str], task: TaskFamily) -> dict[str, Any]:
  """A results.csv row read back, numbers as numbers."""
  out: dict[str, Any] = dict(row)
  for k in _NUMERIC + (task.loss_name,):
    out[k] = float(row[k]) if row[k] != "" else float("nan")
  for k in ("width", "seed", "task", "cell"):
    out[k] = int(out[k])
  return out


def write_for_workdir(wd: str | Path, overrides: dict[str, Any] | None = None) -> list[str]:
  """The scaling analysis of a finished grid run in `wd` (its config.json and results.csv),
  with config.scaling fields overridden by `overrides`; returns the summary lines."""
  from rare_tasks.grid_runner import task_of  # the runner imports this module

  wd = Path(wd)
  for name in (workdir.CONFIG_FILE, "results.csv"):
    if not (wd / name).exists():
      raise FileNotFoundError(f"{wd} holds no finished grid run (no {name}); run the study "
                              "to the end first")
  config = workdir.load_config(wd)
  if config.study != "grid":
    raise ValueError(f"{wd} holds a {config.study!r} study; scaling fits need a grid run")
  for k, v in (overrides or {}).items():
    config.scaling[k] = v
  validate(config)
  task = task_of(config)
  rows = [_typed(r, task) for r in read_results(wd)]
  # Every metrics.jsonl record carries its cell's grid values.
  cell_values = {}
  for r in workdir.read_metrics(wd):
    cell_values.setdefault(r["cell"], {a: r[a] for a in GRID_AXES})
  return write(config, wd, task, rows, cell_values)
