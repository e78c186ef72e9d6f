"""Tables, figures and summary lines of the mechanism measurements of a grid run.

Each part runs when its measurement is on: allocation.csv (measure.allocation),
interference.csv and interference.npz (measure.interference), retention.csv (bursts injection
with measure.trace_rare), learning_order.csv (always: which tasks each cell learns, and when).
The figures go to figures/ and the observed effects, in numbers, to the returned summary lines.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from rare_tasks import learning_order, mechanism_figures, retention, theory, traces, workdir
from rare_tasks.grid import Cell, Group
from rare_tasks.results_table import number, write_csv
from rare_tasks.study_report import averaged_over

ALLOCATION_COLUMNS = ("width", "rare_frequency", "seed", "step", "task", "effective_neurons",
                      "dominant_neurons", "is_rare", "gap", "cell")
INTERFERENCE_COLUMNS = ("width", "rare_frequency", "seed", "step", "common_grad_norm",
                        "rare_grad_norm", "common_rare_cosine", "rare_overwrite", "gap", "cell")
RETENTION_COLUMNS = ("width", "gap", "rare_frequency", "seed", "burst", "gain",
                     "retained_fraction", "half_life", "signal", "update", "before", "peak",
                     "cell")
LEARNING_ORDER_COLUMNS = ("width", "rare_frequency", "seed", "task", "task_frequency", "beta",
                          "top_utility", "learned_step", "predicted_learned_width", "is_rare",
                          "cell")
LEARNING_ORDER_COLUMNS_WITHOUT_THEORY = ("width", "rare_frequency", "seed", "task",
                                         "task_frequency", "complexity", "learned_step", "is_rare",
                                         "cell")
# Retention signals: name in retention.csv -> (trace array, transform to "higher is better").
SIGNALS = {"feature_capture": ("rare_capture", lambda a: a),
           "explained_variance": ("rare_fvu", lambda a: 1.0 - a)}


def _by_cell(metrics: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
  out: dict[int, list[dict[str, Any]]] = {}
  for r in metrics:
    out.setdefault(r["cell"], []).append(r)
  return out


def _key(c: Cell) -> dict[str, Any]:
  v = c.values
  return {"width": v["width"], "rare_frequency": v["rare_frequency"], "seed": v["seed"],
          "gap": v["gap"], "cell": c.index}


def _mean_by(rows: list[dict[str, Any]], keys: tuple[str, ...], value: str) -> dict[tuple, float]:
  groups: dict[tuple, list[float]] = {}
  for r in rows:
    groups.setdefault(tuple(r[k] for k in keys), []).append(r[value])
  return {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
          for k, v in groups.items()}


def _pct(x: float) -> str:
  return "nan" if not np.isfinite(x) else f"{100 * x:.0f}%"


def _fmt(x: float) -> str:
  return "nan" if not np.isfinite(x) else f"{x:.3g}"


def allocation(wd: Path, config, task, cells: list[Cell], by_cell, predictions) -> list[str]:
  rare = set(task.rare_tasks)
  rows = []
  for c in cells:
    for r in by_cell[c.index]:
      for k in range(task.num_tasks):
        rows.append({**_key(c), "step": r["step"], "task": k, "is_rare": k in rare,
                     "effective_neurons": number(r["effective_neurons"][k]),
                     "dominant_neurons": number(r["dominant_neurons"][k])})
  write_csv(wd / "allocation.csv", ALLOCATION_COLUMNS, rows)
  steps = config.train.steps
  final = [r for r in rows if r["step"] == steps]
  widths = sorted({r["width"] for r in final})
  freqs = sorted({r["rare_frequency"] for r in final})
  f_show = freqs[len(freqs) // 2]
  mean = _mean_by([r for r in final if r["rare_frequency"] == f_show], ("width", "task"),
                  "effective_neurons")
  table = np.array([[mean[(w, k)] for k in range(task.num_tasks)] for w in widths])
  ref = next(c for c in cells if c.values["rare_frequency"] == f_show)
  pred = predictions[ref.index]
  crit = None if pred is None else pred.critical_width
  mechanism_figures.allocation(
      wd / "figures" / "allocation.png", np.array(widths), table, crit, sorted(rare),
      f"effective neurons per task at step {steps} (rare frequency {f_show:g}, "
      f"{averaged_over(cells, ('width', 'rare_frequency'))})")
  r0 = task.rare_tasks[0]
  crit_of = (lambda k: "") if crit is None else (
      lambda k: f", critical width {int(crit[k])} (of the first such cell)")
  lines = ["## Neuron allocation", "",
           f"Effective neurons (sum of shares) of rare task {r0} at step {steps}, rare frequency "
           f"{f_show:g} ({averaged_over(cells, ('width', 'rare_frequency'))}){crit_of(r0)}: " +
           ", ".join(f"width {w}: {_fmt(mean[(w, r0)])}" for w in widths) + ".",
           f"Most frequent task 0{crit_of(0)}: " +
           ", ".join(f"width {w}: {_fmt(mean[(w, 0)])}" for w in widths) + ".", "",
           "![allocation](figures/allocation.png)", ""]
  return lines


def interference(wd: Path, config, task, cells: list[Cell], by_cell) -> list[str]:
  rows, cos, norms = [], [], []
  steps = sorted({r["step"] for c in cells for r in by_cell[c.index]})
  for c in cells:
    recs = {r["step"]: r for r in by_cell[c.index]}
    cos.append([np.array(recs[s]["cosine"], dtype=float) for s in steps])
    norms.append([np.array(recs[s]["grad_norm"], dtype=float) for s in steps])
    for s in steps:
      r = recs[s]
      rows.append({**_key(c), "step": s, **{k: number(r[k]) for k in (
          "common_grad_norm", "rare_grad_norm", "common_rare_cosine", "rare_overwrite")}})
  write_csv(wd / "interference.csv", INTERFERENCE_COLUMNS, rows)
  buf = io.BytesIO()
  np.savez(buf, cell=np.array([c.index for c in cells]), step=np.array(steps),
           width=np.array([c.values["width"] for c in cells]),
           rare_frequency=np.array([c.values["rare_frequency"] for c in cells]),
           seed=np.array([c.values["seed"] for c in cells]),
           gap=np.array([c.values["gap"] for c in cells]),
           cosine=np.array(cos), grad_norm=np.array(norms))
  workdir.write_bytes(wd / "interference.npz", buf.getvalue())

  widths = sorted({c.values["width"] for c in cells})
  freqs = sorted({c.values["rare_frequency"] for c in cells})
  f_show = freqs[len(freqs) // 2]
  show = [r for r in rows if r["rare_frequency"] == f_show]
  norm_by = _mean_by(show, ("width", "step"), "common_grad_norm")
  curves = {w: (np.array(steps), np.array([norm_by[(w, s)] for s in steps])) for w in widths}
  final_norm = [norm_by[(w, steps[-1])] for w in widths]
  trained = [r for r in rows if r["step"] > 0]
  over = _mean_by(trained, ("rare_frequency", "width"), "rare_overwrite")
  overwrite = {f: np.array([over[(f, w)] for w in widths]) for f in freqs}
  cosine = _mean_by(trained, ("rare_frequency", "width"), "common_rare_cosine")
  cells_show = [next(c for c in cells if c.values["width"] == w and
                     c.values["rare_frequency"] == f_show) for w in (widths[0], widths[-1])]
  picks = sorted({steps[min(i, len(steps) - 1)] for i in (1, len(steps) // 3, len(steps) - 1)})
  matrices = {f"width {c.values['width']}": [(s, cos[cells.index(c)][steps.index(s)])
                                             for s in picks] for c in cells_show}
  mechanism_figures.interference(
      wd / "figures", matrices, curves, np.array(widths), overwrite, sorted(task.rare_tasks),
      f"rare frequency {f_show:g}, {averaged_over(cells, ('width', 'rare_frequency'))}",
      f"rare frequency {f_show:g}, seed {cells_show[0].values['seed']}")
  falls = all(a > b for a, b in zip(final_norm, final_norm[1:]))
  mid_over = overwrite[f_show]
  return [
      "## Gradient interference", "",
      f"Common-task gradient norm at step {steps[-1]} (rare frequency {f_show:g}, "
      f"{averaged_over(cells, ('width', 'rare_frequency'))}): " +
      ", ".join(f"width {w}: {_fmt(v)}" for w, v in zip(widths, final_norm)) +
      f". Falls with every step up in width: {falls}.",
      "Overwrite (first-order change of the rare loss caused by the common tasks' part of an "
      "optimiser step, mean over the evaluations after step 0; positive raises the rare loss): "
      + ", ".join(f"width {w}: {_fmt(v)}" for w, v in zip(widths, mid_over)) + ".",
      "Cosine between the common-task and the rare-task gradient (same mean; negative: the "
      "common tasks pull against the rare one): " +
      ", ".join(f"width {w}: {_fmt(cosine[(f_show, w)])}" for w in widths) + ".", "",
      "![interference matrices](figures/interference_matrices.png)", "",
      "![common gradient norm](figures/common_grad_norm.png)", "",
      "![overwrite](figures/overwrite.png)", ""]


def _signal_rows(config, task, group: Group, trace: dict[str, np.ndarray]):
  steps = config.train.steps
  batch = config.train.batch_size
  rows, summaries = [], []
  for si, row in enumerate(group.cells):
    for pi, c in enumerate(row):
      v = c.values
      bursts = retention.burst_updates(steps, config.injection.withhold_steps, v["gap"])
      for name, (array, transform) in SIGNALS.items():
        # Mean over the rare tasks; trace step t is the value after t updates.
        signal = transform(trace[array][:, si, pi].mean(-1))
        metrics = retention.burst_metrics(signal, bursts)
        for m in metrics:
          rows.append({**_key(c), "signal": name, **{k: m[k] for k in (
              "burst", "gain", "retained_fraction", "half_life", "update", "before", "peak")}})
        summaries.append({**_key(c), "signal": name, **retention.cell_summary(metrics),
                          "final": float(signal[-1]),
                          "burst_size": retention.burst_size(v["rare_frequency"], v["gap"],
                                                             batch, task.num_rare)})
  return rows, summaries


def injection_retention(wd: Path, config, task, groups: list[Group]) -> list[str]:
  rows, summaries, shown = [], [], {}
  for g in groups:
    trace = traces.read_group(wd, g.name)
    if trace is None or len(trace["steps"]) != config.train.steps + 1:
      raise RuntimeError(f"{g.name}: its per-step trace is missing or incomplete; run the study "
                         "again to finish it")
    r, s = _signal_rows(config, task, g, trace)
    rows += r
    summaries += s
    shown.setdefault(g.static["width"], (g, trace))  # the first group of each width is drawn
  write_csv(wd / "retention.csv", RETENTION_COLUMNS, rows)
  widths = sorted(shown)
  gaps = sorted({s["gap"] for s in summaries})
  freq = sorted({s["rare_frequency"] for s in summaries})[0]
  lines = ["## Injection and retention", "",
           f"Rare task withheld for {config.injection.withhold_steps} updates, then injected in "
           f"bursts every gap updates at long-run frequency {freq:g}. Median over bursts, then "
           f"{averaged_over(cells_of(groups), ('width', 'gap', 'rare_frequency'))}; a cell "
           "accumulates when the level it keeps over the run exceeds "
           "one burst's gain.", ""]
  grids, gains, sels = {}, {}, {}
  for name in SIGNALS:
    sel = sels[name] = [s for s in summaries
                        if s["signal"] == name and s["rare_frequency"] == freq]
    ret = _mean_by(sel, ("width", "gap"), "median_retained_fraction")
    gain = gains[name] = _mean_by(sel, ("width", "gap"), "median_gain")
    acc = _mean_by([{**s, "acc": float(s["accumulates"])} for s in sel], ("width", "gap"), "acc")
    grids[name] = np.array([[ret[(w, gp)] for gp in gaps] for w in widths])
    lines += [f"Signal `{name}`: retained fraction (median gain; fraction of cells that "
              "accumulate)", "", "| width | " + " | ".join(f"gap {gp}" for gp in gaps) + " |",
              "|---|" + "---|" * len(gaps)]
    for w in widths:
      lines.append(f"| {w} | " + " | ".join(
          f"{_fmt(ret[(w, gp)])} ({_fmt(gain[(w, gp)])}; {_fmt(acc[(w, gp)])})" for gp in gaps)
          + " |")
    lines.append("")
  big_gap = gaps[-1]
  main = grids["feature_capture"]
  gain = gains["feature_capture"]
  final = _mean_by(sels["feature_capture"], ("width", "gap"), "final")
  for j, gp in enumerate(gaps):
    if gp == 1:  # steady exposure: nothing decays between bursts
      continue
    lines.append(f"- Gap {gp}, feature capture: the narrowest width ({widths[0]}) retains "
                 f"{_fmt(main[0, j])} of a burst's gain (median gain {_fmt(gain[(widths[0], gp)])}"
                 f"), the widest ({widths[-1]}) {_fmt(main[-1, j])} (median gain "
                 f"{_fmt(gain[(widths[-1], gp)])}).")
  lines += ["", "A median gain far below 0.001 means the bursts barely move the signal: there is "
            "no spike to retain.", "",
            "Feature capture at the end of the run (same mean), by gap " +
            ", ".join(str(gp) for gp in gaps) + ":", ""]
  for w in widths:
    lines.append(f"- width {w}: " + ", ".join(_fmt(final[(w, gp)]) for gp in gaps))
  lines.append("")
  bursts = retention.burst_updates(config.train.steps, config.injection.withhold_steps, big_gap)
  curves = {}
  for w in widths:
    g, trace = shown[w]
    si, pi = _find(g, big_gap, freq)
    curves[w] = {"signal": trace["rare_capture"][:, si, pi].mean(-1), "bursts": bursts}
  mechanism_figures.retention(wd / "figures", curves, np.array(widths), np.array(gaps), main,
                              f"long-run rare frequency {freq:g}, seed of the first stream")
  lines += ["![retention traces](figures/retention_traces.png)", "",
            "![retained fraction](figures/retained_fraction.png)", ""]
  return lines


def _loss_matrix(task, recs: list[dict[str, Any]]) -> np.ndarray:
  """(T, K) headline loss of a cell's records: the exact FVU where known (linear models of a
  family with theory), else the held-out estimate."""
  exact = [r.get("population_fvu") or [None] * task.num_tasks for r in recs]
  return np.array([[number(p) if p is not None else number(f)
                    for p, f in zip(e, r[task.loss_name])] for e, r in zip(exact, recs)])


def cells_of(groups: list[Group]) -> list[Cell]:
  return [c for g in groups for c in g.flat_cells()]


def _find(group: Group, gap: int, freq: float) -> tuple[int, int]:
  for si, row in enumerate(group.cells):
    for pi, c in enumerate(row):
      if c.values["gap"] == gap and c.values["rare_frequency"] == freq:
        return si, pi
  raise KeyError((gap, freq))


def learning_orders(wd: Path, config, task, cells: list[Cell], by_cell) -> tuple[list[str], dict]:
  rows, agreements = [], []
  for c in cells:
    v = c.values
    recs = by_cell[c.index]
    mixture = task.mixture(v["rare_frequency"], v["common_exponent"])
    fvu = _loss_matrix(task, recs)
    measured = learning_order.first_learned_step([r["step"] for r in recs], fvu,
                                                 config.learned_fvu)
    if not task.has_theory:
      agreements.append((c, (float("nan"), 0), learning_order.pair_agreement(measured, -mixture)))
      complexity = task.complexity(v)
      for k in range(task.num_tasks):
        rows.append({**_key(c), "task": k, "task_frequency": float(mixture[k]),
                     "complexity": float(complexity[k]), "learned_step": measured[k],
                     "is_rare": k in task.rare_tasks})
      continue
    spectrum = task.spectrum(v["beta"])
    predicted = learning_order.learned_width(mixture, spectrum, config.learned_fvu)
    by_utility = learning_order.pair_agreement(measured, predicted)
    by_frequency = learning_order.pair_agreement(measured, -mixture)
    agreements.append((c, by_utility, by_frequency))
    betas = task.betas(v["beta"])
    top = theory.predict(mixture, spectrum, 1).utilities.max(-1)
    for k in range(task.num_tasks):
      rows.append({**_key(c), "task": k, "task_frequency": float(mixture[k]),
                   "beta": float(betas[k]), "top_utility": float(top[k]),
                   "learned_step": measured[k], "predicted_learned_width": int(predicted[k]),
                   "is_rare": k in task.rare_tasks})
  write_csv(wd / "learning_order.csv", LEARNING_ORDER_COLUMNS if task.has_theory
            else LEARNING_ORDER_COLUMNS_WITHOUT_THEORY, rows)
  u = [a[1] for a in agreements if a[1][1]]
  f = [a[2] for a in agreements if a[2][1]]
  pooled = lambda xs: (sum(a * n for a, n in xs) / max(sum(n for _, n in xs), 1),  # noqa: E731
                       sum(n for _, n in xs))
  summary = {"utility_pair_agreement": pooled(u), "frequency_pair_agreement": pooled(f)}
  return rows, summary


def learning_order_section(wd: Path, config, task, cells: list[Cell], rows, summary,
                           by_cell) -> list[str]:
  widest = max(c.values["width"] for c in cells)
  cell = next(c for c in cells if c.values["width"] == widest)
  sel = [r for r in rows if r["cell"] == cell.index]
  recs = by_cell[cell.index]
  steps = np.array([r["step"] for r in recs])
  fvu = _loss_matrix(task, recs)
  mechanism_figures.learning_order(wd / "figures" / "learning_order.png", steps, fvu, sel,
                                   config.learned_fvu, f"width {widest}, seed "
                                   f"{cell.values['seed']}")
  ua, un = summary["utility_pair_agreement"]
  fa, fn = summary["frequency_pair_agreement"]
  final = config.train.steps
  lines = ["## Learning order", "",
           f"Pairs of learned tasks (learned at different steps) ordered as predicted, pooled "
           f"over cells: by utility (the closed-form width at which the optimum learns the task) "
           f"{_pct(ua)} of {un} pairs; by frequency alone {_pct(fa)} of {fn}.", "",
           f"Tasks learned by step {final} (FVU <= {config.learned_fvu}), measured in every seed "
           "(predicted by the closed form):", ""]
  for w in sorted({c.values["width"] for c in cells}):
    at_w = [r for r in rows if r["width"] == w]
    seeds = sorted({r["seed"] for r in at_w})
    learned = sorted({r["task"] for r in at_w if all(
        q["learned_step"] <= final for q in at_w if q["task"] == r["task"])})
    predicted = sorted({r["task"] for r in at_w if r["predicted_learned_width"] <= w})
    lines.append(f"- width {w}: {learned} ({predicted}) over seeds {seeds}")
  lines += ["", f"Width {widest}, seed {cell.values['seed']}, tasks in measured order:", "",
            "| task | frequency | beta | top utility | predicted learned width | learned step |",
            "|---|---|---|---|---|---|"]
  for r in sorted(sel, key=lambda r: (np.nan_to_num(r["learned_step"], nan=np.inf),
                                      r["predicted_learned_width"])):
    step = "never" if np.isnan(r["learned_step"]) else str(int(r["learned_step"]))
    lines.append(f"| {r['task']}{' (rare)' if r['is_rare'] else ''} | "
                 f"{r['task_frequency']:.3g} | {r['beta']:g} | {r['top_utility']:.3g} | "
                 f"{r['predicted_learned_width']} | {step} |")
  lines += ["", "![learning order](figures/learning_order.png)", ""]
  return lines


def empirical_learning_order_section(config, task, cells: list[Cell], rows,
                                     summary) -> list[str]:
  """Learning order of a family without a closed form: against frequency, per width."""
  fa, fn = summary["frequency_pair_agreement"]
  lines = ["## Learning order", "",
           f"Pairs of learned tasks (learned at different evaluations) in which the more frequent "
           f"task was learned first, pooled over cells: {_pct(fa)} of {fn}.", "",
           f"First evaluation step at which each task's {task.loss_name} is <= "
           f"{config.learned_fvu} (tasks by decreasing frequency; mean over the cells where it is "
           "learned, with their count):", ""]
  widths = sorted({c.values["width"] for c in cells})
  order = sorted(range(task.num_tasks), key=lambda k: -next(
      r["task_frequency"] for r in rows if r["task"] == k))
  lines += ["| width | " + " | ".join(f"task {k}" for k in order) + " |",
            "|---|" + "---|" * len(order)]
  for w in widths:
    out = []
    for k in order:
      steps = [r["learned_step"] for r in rows if r["width"] == w and r["task"] == k]
      hit = [s for s in steps if np.isfinite(s)]
      out.append(f"{np.mean(hit):.0f} ({len(hit)}/{len(steps)})" if hit else "never")
    lines.append(f"| {w} | " + " | ".join(out) + " |")
  return lines + [""]


def write(config: ml_collections.ConfigDict, wd: Path, task, cells: list[Cell],
          groups: list[Group], predictions: dict[int, theory.Prediction | None],
          metrics: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
  """Writes every enabled mechanism table and figure; returns (summary.md lines, numbers)."""
  by_cell = _by_cell(metrics)
  lines: list[str] = []
  rows, order = learning_orders(wd, config, task, cells, by_cell)
  numbers: dict[str, Any] = {"learning_order": order}
  if config.measure.allocation:
    lines += allocation(wd, config, task, cells, by_cell, predictions)
  if config.measure.interference:
    lines += interference(wd, config, task, cells, by_cell)
  if config.injection.mode == "bursts" and config.measure.trace_rare:
    lines += injection_retention(wd, config, task, groups)
  if not task.has_theory:
    lines += empirical_learning_order_section(config, task, cells, rows, order)
  elif _betas_differ(cells, task):
    lines += learning_order_section(wd, config, task, cells, rows, order, by_cell)
  return lines, numbers


def _betas_differ(cells: list[Cell], task) -> bool:
  """Whether some cell has per-task betas that differ (a complexity study)."""
  return any(len(set(task.betas(c.values["beta"]))) > 1 for c in cells)
