"""Mixture design: per width, the smallest rare-task frequency that is learned within the training
budget, and the inverse, the smallest width that learns a given frequency.

The search (rare_tasks.frequency_search) runs in rounds. A round trains, for every width still
searching, its candidate frequencies x the grid's seeds to `train.steps`, as the grid runner's
ensembles (one compiled ensemble per width: seeds are streams, candidates members), in
`rounds/round<r>/` with its own metrics.jsonl and checkpoints. A candidate is learned when every
rare task's headline loss is at or below `learned_fvu` at the end. A family with closed-form
theory starts each width at its closed-form critical frequency (the smallest frequency whose
optimum at that width has the rare task's FVU at or below `learned_fvu`), others at
`design.initial_frequency`. Rounds are a deterministic function of the finished rounds, so a
killed run restarted with the same command replays them from their metrics and resumes.

Writes mixture_design.csv (per width), min_width.csv (per target frequency),
figures/mixture_design.png and summary.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from rare_tasks import figures, frequency_search, grid_runner, learning_order, sharding, theory
from rare_tasks import workdir as workdirs
from rare_tasks.config_schema import validate
from rare_tasks.grid import Cell, expand, group_cells
from rare_tasks.progress import log
from rare_tasks.results_table import number, write_csv
from rare_tasks.tasks import TaskFamily

COLUMNS = ("width", "min_frequency", "min_frequency_low", "min_frequency_high",
           "predicted_min_frequency", "resolution", "seeds_learned", "num_seeds", "below_range",
           "never_learned", "searched_low", "searched_high")
INVERSE_COLUMNS = ("frequency", "min_width", "min_width_low", "min_width_high",
                   "predicted_min_width")


def predicted_min_frequency(task: TaskFamily, values: dict[str, Any], learned_fvu: float,
                            max_frequency: float) -> float:
  """The closed-form critical frequency of a width: the smallest rare frequency at which the
  optimum's FVU of every rare task is <= learned_fvu (bisection on a log scale; the FVU falls
  with the frequency). NaN when even max_frequency is not learned."""
  spectrum = task.spectrum(values["beta"])
  rare = list(task.rare_tasks)

  def learned(f: float) -> bool:
    mixture = task.mixture(f, values["common_exponent"])
    return bool((theory.predict(mixture, spectrum, values["width"]).fvu[rare]
                 <= learned_fvu).all())

  lo, hi = np.log(1e-12), np.log(max_frequency)
  if not learned(np.exp(hi)):
    return float("nan")
  for _ in range(80):
    mid = (lo + hi) / 2
    lo, hi = (lo, mid) if learned(np.exp(mid)) else (mid, hi)
  return float(np.exp(hi))


def predicted_min_width(task: TaskFamily, values: dict[str, Any], frequency: float,
                        learned_fvu: float) -> int:
  """The closed-form smallest width whose optimum learns every rare task at `frequency`."""
  mixture = task.mixture(frequency, values["common_exponent"])
  widths = learning_order.learned_width(mixture, task.spectrum(values["beta"]), learned_fvu)
  return int(widths[list(task.rare_tasks)].max())


def _settings(config: ml_collections.ConfigDict) -> frequency_search.SearchSettings:
  d = config.design
  return frequency_search.SearchSettings(
      min_frequency=d.min_frequency, max_frequency=d.max_frequency,
      num_candidates=d.num_candidates, bracket_factor=d.bracket_factor,
      refine_rounds=d.refine_rounds, max_expansions=d.max_expansions)


def _round_cells(base: list[Cell], candidates: dict[int, np.ndarray]) -> list[Cell]:
  """Cells of one round: for each base (width, seed) cell being searched, one per candidate."""
  cells = []
  for c in base:
    for f in candidates.get(c.values["width"], ()):
      cells.append(Cell(len(cells), {**c.values, "rare_frequency": float(f)}))
  return cells


def _learned(config, task: TaskFamily, cells: list[Cell], metrics: list[dict[str, Any]],
             candidates: dict[int, np.ndarray], seeds: Sequence[int]) -> dict[int, np.ndarray]:
  """Per width, whether each (seed, candidate) learned every rare task, bool (S, C)."""
  final = {r["cell"]: r for r in metrics if r["step"] == config.train.steps}
  out = {w: np.zeros((len(seeds), len(f)), bool) for w, f in candidates.items()}
  for c in cells:
    v = c.values
    record = final[c.index]
    if record["rare_frequency"] != v["rare_frequency"]:
      raise workdirs.WorkdirError(f"cell {c.index}'s record has rare_frequency "
                                  f"{record['rare_frequency']}, its round {v['rare_frequency']}")
    losses = [number(record[task.loss_name][k]) for k in task.rare_tasks]
    j = int(np.argmin(np.abs(candidates[v["width"]] - v["rare_frequency"])))
    out[v["width"]][list(seeds).index(v["seed"]), j] = all(x <= config.learned_fvu
                                                           for x in losses)
  return out


def _train_round(config, wd: Path, index: int, cells: list[Cell], task: TaskFamily, mesh,
                 chunk_hook) -> tuple[list[dict[str, Any]], int]:
  """Trains (or resumes, or finds finished) one round; returns its metrics and steps trained."""
  rd = wd / "rounds" / f"round{index}"
  rd.mkdir(parents=True, exist_ok=True)
  text = json.dumps([c.values for c in cells], indent=1) + "\n"
  stored = rd / "cells.json"
  # A round is replayed from its stored metrics only if it is the same round.
  if stored.exists() and json.loads(stored.read_text()) != json.loads(text):
    raise workdirs.WorkdirError(
        f"{rd} holds a search round with other cells than this run proposes (the search or its "
        f"closed form has changed since); use another --workdir, or delete {rd.parent} to search "
        "again")
  workdirs.write_text(stored, text)
  trained = grid_runner.train_groups(config, rd, group_cells(cells), task, mesh, chunk_hook)
  return workdirs.read_metrics(rd), trained


def run(config: ml_collections.ConfigDict, workdir_path: str | Path, overwrite: bool = False,
        devices: Sequence[jax.Device] | None = None,
        chunk_hook: grid_runner.ChunkHook | None = None) -> grid_runner.RunReport:
  """Runs (or resumes, or reports) the mixture design study of `config` in `workdir_path`."""
  start = time.perf_counter()
  validate(config)
  wd = workdirs.prepare(workdir_path, config, overwrite)
  task = grid_runner.task_of(config)
  base = expand(config)  # one cell per (width, seed), in the grid's order
  widths = sorted({c.values["width"] for c in base})
  seeds = sorted({c.values["seed"] for c in base})
  ref = {w: next(c.values for c in base if c.values["width"] == w) for w in widths}
  d = config.design
  predicted = {w: (predicted_min_frequency(task, ref[w], config.learned_fvu, d.max_frequency)
                   if task.has_theory else float("nan")) for w in widths}
  centers = {w: predicted[w] if np.isfinite(predicted[w]) else d.initial_frequency
             for w in widths}
  centers = {w: float(np.clip(f, d.min_frequency, d.max_frequency)) for w, f in centers.items()}
  search = frequency_search.FrequencySearch(widths, len(seeds), centers, _settings(config))
  mesh = sharding.ensemble_mesh(devices)
  log.info("mixture design: widths %s x seeds %s, %d steps per candidate, on %d device(s); "
           "workdir %s", widths, seeds, config.train.steps, mesh.devices.size, wd)
  trained = 0
  while (candidates := search.next_round()) is not None:
    cells = _round_cells(base, candidates)
    log.info("round %d: %d cells (%s)", search.round_index, len(cells), ", ".join(
        f"width {w}: {len(f)} candidates {f[0]:.3g}..{f[-1]:.3g}" for w, f in candidates.items()))
    metrics, ran = _train_round(config, wd, search.round_index, cells, task, mesh, chunk_hook)
    trained += ran
    search.record(_learned(config, task, cells, metrics, candidates, seeds))

  results = search.results()
  rows = []
  for w in widths:
    r = results[w]
    rows.append({"width": w, "min_frequency": r.min_frequency, "min_frequency_low": r.low,
                 "min_frequency_high": r.high, "predicted_min_frequency": predicted[w],
                 "resolution": r.resolution,
                 "seeds_learned": int(np.isfinite(r.thresholds).sum()), "num_seeds": len(seeds),
                 "below_range": r.below_range, "never_learned": r.never_learned,
                 "searched_low": r.searched[0], "searched_high": r.searched[1]})
  write_csv(wd / "mixture_design.csv", COLUMNS, rows)
  inverse = _inverse(config, task, ref[widths[0]], rows)
  write_csv(wd / "min_width.csv", INVERSE_COLUMNS, inverse)
  summary = _report(config, wd, task, ref[widths[0]], rows, inverse, search.round_index,
                    trained, time.perf_counter() - start)
  return grid_runner.RunReport(wd, trained, time.perf_counter() - start, summary)


def _inverse(config, task: TaskFamily, values: dict[str, Any],
             rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """min_width.csv rows: for each target frequency, the smallest width of the list that learns
  it (and its interval over seeds), beside the closed form's smallest width."""
  targets = config.design.target_frequencies
  if targets is None:
    found = [r[k] for r in rows for k in ("min_frequency_low", "min_frequency_high")
             if np.isfinite(r[k])]
    lo, hi = ((min(found), max(found)) if found
              else (config.design.min_frequency, config.design.max_frequency))
    if hi <= lo * 1.5:  # one threshold: a range around it
      lo, hi = lo / 2, min(hi * 2, config.design.max_frequency)
    targets = np.geomspace(lo, hi, 6)
  targets = sorted({float(f) for f in targets})
  widths = [r["width"] for r in rows]
  mid, low, high = frequency_search.smallest_width(
      widths, [r["min_frequency"] for r in rows], [r["min_frequency_low"] for r in rows],
      [r["min_frequency_high"] for r in rows], targets)
  return [{"frequency": f, "min_width": mid[i], "min_width_low": low[i],
           "min_width_high": high[i],
           "predicted_min_width": (predicted_min_width(task, values, f, config.learned_fvu)
                                   if task.has_theory else float("nan"))}
          for i, f in enumerate(targets)]


def _report(config, wd: Path, task: TaskFamily, values: dict[str, Any], rows, inverse,
            num_rounds: int, trained: int, wall_s: float) -> dict[str, Any]:
  widths = np.array([r["width"] for r in rows], float)
  measured = np.array([r["min_frequency"] for r in rows])
  low = np.array([r["min_frequency_low"] for r in rows])
  high = np.array([r["min_frequency_high"] for r in rows])
  predicted = np.array([r["predicted_min_frequency"] for r in rows])
  slope = frequency_search.log_slope(widths, measured)
  predicted_slope = frequency_search.log_slope(widths, predicted)
  fine = None
  if task.has_theory:
    grid = np.unique(np.geomspace(widths.min(), widths.max(), 60).round().astype(int))
    fine = (grid, np.array([predicted_min_frequency(task, {**values, "width": int(w)},
                                                    config.learned_fvu,
                                                    config.design.max_frequency)
                            for w in grid]))
  figures.mixture_design(wd / "figures" / "mixture_design.png", widths, measured, low, high,
                         fine, slope, f"{config.task.name}: rare task learned (loss <= "
                         f"{config.learned_fvu}) within {config.train.steps} steps")
  ratio = measured / predicted
  finite = measured[np.isfinite(measured)]
  monotone = bool(np.all(np.diff(finite) <= 0)) if finite.size > 1 else None
  summary = {"slope": slope, "predicted_slope": predicted_slope,
             "ratio_to_predicted": [None if not np.isfinite(x) else float(x) for x in ratio],
             "monotone": monotone, "rounds": num_rounds,
             "trained_steps_this_invocation": trained, "wall_s_this_invocation": wall_s,
             "headline": (f"frequency needed ~ width^{slope:.2f}" if np.isfinite(slope)
                          else "fewer than 2 widths learned the rare task: no slope") + (
                 f" (closed form {predicted_slope:.2f})" if np.isfinite(predicted_slope) else "")}
  lines = [
      "# Mixture design: the rare-task frequency each width needs", "",
      f"Task `{config.task.name}` ({task}); model `{config.model.name}` "
      f"({config.model.activation}); {config.train.optimizer} at {config.train.learning_rate} "
      f"({config.train.schedule}), {config.train.steps} steps of batch "
      f"{config.train.batch_size}; learned: every rare task's {task.loss_name} <= "
      f"{config.learned_fvu} at the end. {num_rounds} search rounds; this invocation trained "
      f"{trained} steps (summed over ensembles) in {wall_s:.1f} s.", "",
      f"Fitted slope of log(min frequency) against log(width): **{slope:.3f}**"
      + (f" (closed form: {predicted_slope:.3f})." if np.isfinite(predicted_slope) else "."),
      f"Measured minimum falls monotonically with width: {monotone}.", "",
      "| width | min frequency (median over seeds) | seeds' range | closed form | measured / "
      "closed form | resolution |", "|---|---|---|---|---|---|"]
  for r, x in zip(rows, ratio):
    lines.append(f"| {r['width']} | {_g(r['min_frequency'])} | {_g(r['min_frequency_low'])} .. "
                 f"{_g(r['min_frequency_high'])} | {_g(r['predicted_min_frequency'])} | "
                 f"{_g(x)} | {_g(r['resolution'])} |")
  lines += ["", "Smallest width (of the list) that learns a frequency (interval over seeds), "
            "beside the closed form's:", "",
            "| frequency | min width | interval | closed form |", "|---|---|---|---|"]
  for r in inverse:
    lines.append(f"| {r['frequency']:.3g} | {_g(r['min_width'])} | {_g(r['min_width_low'])} .. "
                 f"{_g(r['min_width_high'])} | {_g(r['predicted_min_width'])} |")
  lines += ["", "![mixture design](figures/mixture_design.png)", "",
            "Tables: `mixture_design.csv`, `min_width.csv`; every round's cells, metrics and "
            "checkpoints under `rounds/`.", ""]
  workdirs.write_text(wd / "summary.md", "\n".join(lines))
  return summary


def _g(x: float) -> str:
  return "n/a" if x is None or not np.isfinite(x) else f"{x:.3g}"
