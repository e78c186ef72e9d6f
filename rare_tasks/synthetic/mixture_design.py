"""Mixture design: per width, the smallest rare-task frequency that is learned within the training
budget, and the inverse, the smallest width that learns a given frequency.

The search (rare_tasks.analysis.frequency_search) runs in rounds. A round trains, for every width
still searching, its candidate frequencies x the grid's seeds to `train.steps`, as the grid's
ensembles (one compiled ensemble per width: seeds are streams, candidates members), in
`rounds/round<r>/` with its own metrics.jsonl and checkpoints (with config.log.tensorboard, its
cells' TensorBoard runs go to `tensorboard/round<r>/<cell>/`: rare_tasks.core.tensorboard). A
candidate is learned when every rare task's headline loss is at or below `learned.threshold` at
the end. A family with closed-form theory starts each width at its closed-form critical frequency
(the smallest frequency whose optimum at that width has the rare task's FVU at or below
`learned.threshold`), others at `design.initial_frequency`. Rounds are a deterministic function
of the finished rounds, so a killed run restarted with the same command replays them from their
metrics and resumes.

Writes mixture_design.csv (per width), min_width.csv (per target frequency),
figures/mixture_design.png and summary.md (rare_tasks.synthetic.report.mixture_design).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from rare_tasks.analysis import frequency_search
from rare_tasks.core import engine, tensorboard, workdir
from rare_tasks.core import report as reports
from rare_tasks.core.progress import log
from rare_tasks.core.tables import number
from rare_tasks.synthetic import config as schema
from rare_tasks.synthetic import placement, training
from rare_tasks.synthetic.grid import Cell, expand, group_cells, make_cell, run_names
from rare_tasks.synthetic.report import mixture_design as design_report
from rare_tasks.synthetic.tasks import TaskFamily, task_of

ROUNDS_DIR = "rounds"
# Everything a mixture design writes into its work directory (--overwrite deletes these).
FILES = reports.declared_files((ROUNDS_DIR, reports.SUMMARY_FILE, tensorboard.DIR),
                               design_report.FILES)
# The config fields and values renamed since older work directories were written.
ALIASES = schema.ALIASES


def _round_cells(config: ml_collections.ConfigDict, task: TaskFamily, base: list[Cell],
                 candidates: dict[int, np.ndarray]) -> list[Cell]:
  """Cells of one round: for each base (width, seed) cell being searched, one per candidate."""
  cells = []
  for c in base:
    for f in candidates.get(c.values["width"], ()):
      cells.append(make_cell(len(cells), {**c.values, "rare_frequency": float(f)}, task, config))
  return cells


def _learned(config: ml_collections.ConfigDict, task: TaskFamily, cells: list[Cell],
             metrics: list[dict[str, Any]], candidates: dict[int, np.ndarray],
             seeds: Sequence[int]) -> dict[int, np.ndarray]:
  """Per width, whether each (seed, candidate) learned every rare task, bool (S, C)."""
  final = {r["cell"]: r for r in metrics if r["step"] == config.train.steps}
  out = {w: np.zeros((len(seeds), len(f)), bool) for w, f in candidates.items()}
  for c in cells:
    v = c.values
    record = final[c.index]
    if record["rare_frequency"] != v["rare_frequency"]:
      raise workdir.WorkdirError(f"cell {c.index}'s record has rare_frequency "
                                 f"{record['rare_frequency']}, its round {v['rare_frequency']}")
    losses = [number(record[task.loss_name][k]) for k in task.rare_tasks]
    j = int(np.argmin(np.abs(candidates[v["width"]] - v["rare_frequency"])))
    out[v["width"]][list(seeds).index(v["seed"]), j] = all(x <= config.learned.threshold
                                                           for x in losses)
  return out


def _train_round(config: ml_collections.ConfigDict, wd: Path, index: int, cells: list[Cell],
                 task: TaskFamily, mesh, callbacks: Sequence[engine.Callback]
                 ) -> tuple[list[dict[str, Any]], int]:
  """Trains (or resumes, or finds finished) one round; returns its metrics and steps trained."""
  rd = wd / ROUNDS_DIR / f"round{index}"
  rd.mkdir(parents=True, exist_ok=True)
  text = json.dumps([c.values for c in cells], indent=1) + "\n"
  stored = rd / "cells.json"
  # A round is replayed from its stored metrics only if it is the same round.
  if stored.exists() and json.loads(stored.read_text()) != json.loads(text):
    raise workdir.WorkdirError(
        f"{rd} holds a search round with other cells than this run proposes (the search or its "
        f"closed form has changed since); use another --workdir, or delete {rd.parent} to search "
        "again")
  workdir.write_text(stored, text)
  names = run_names(cells)
  with tensorboard.writing(config.log.tensorboard, wd / tensorboard.DIR / rd.name,
                           lambda r: names[r["cell"]]) as logged:
    trained = training.train_groups(config, rd, group_cells(cells), task, mesh,
                                    (*callbacks, *logged))
  return workdir.read_metrics(rd), trained


def _start_search(config: ml_collections.ConfigDict, task: TaskFamily, widths: list[int],
                  ref: dict[int, dict[str, Any]],
                  num_seeds: int) -> tuple[frequency_search.FrequencySearch, dict[int, float]]:
  """The search, centred on each width's closed-form critical frequency (or the configured
  initial one); and those closed-form frequencies (NaN without a closed form)."""
  d = config.design
  theory = task.theory
  predicted = {w: (theory.min_frequency(ref[w], config.learned.threshold, d.max_frequency)
                   if theory is not None else float("nan")) for w in widths}
  centers = {w: predicted[w] if np.isfinite(predicted[w]) else d.initial_frequency
             for w in widths}
  centers = {w: float(np.clip(f, d.min_frequency, d.max_frequency)) for w, f in centers.items()}
  settings = frequency_search.SearchSettings.of(config.design)
  return frequency_search.FrequencySearch(widths, num_seeds, centers, settings), predicted


def run(config: ml_collections.ConfigDict, workdir_path: str | Path, overwrite: bool = False,
        devices: Sequence[jax.Device] | None = None,
        callbacks: Sequence[engine.Callback] = (),
        run_files: Collection[str] = FILES) -> reports.RunReport:
  """Runs (or resumes, or reports) the mixture design study of `config` in `workdir_path`.

  `run_files`: what --overwrite deletes (default: what this study writes).
  """
  start = time.perf_counter()
  schema.validate(config)
  wd = workdir.prepare(workdir_path, config, overwrite, defaults=schema.base_config(),
                       run_files=run_files, not_identity=schema.NOT_IDENTITY,
                       aliases=schema.ALIASES)
  task = task_of(config)
  base = expand(config, task)  # one cell per (width, seed), in the grid's order
  widths = sorted({c.values["width"] for c in base})
  seeds = sorted({c.values["seed"] for c in base})
  ref = {w: next(c.values for c in base if c.values["width"] == w) for w in widths}
  search, predicted = _start_search(config, task, widths, ref, len(seeds))
  mesh = placement.ensemble_mesh(devices)
  log.info("mixture design: widths %s x seeds %s, %d steps per candidate, on %d device(s); "
           "workdir %s", widths, seeds, config.train.steps, mesh.devices.size, wd)
  trained, every_record = 0, []
  while (candidates := search.next_round()) is not None:
    cells = _round_cells(config, task, base, candidates)
    round_index = search.round_index
    log.info("round %d: %d cells (%s)", round_index, len(cells), ", ".join(
        f"width {w}: {len(f)} candidates {f[0]:.3g}..{f[-1]:.3g}" for w, f in candidates.items()))
    metrics, ran = _train_round(config, wd, round_index, cells, task, mesh, callbacks)
    trained += ran
    search.record(_learned(config, task, cells, metrics, candidates, seeds))
    # A diverged candidate learned nothing (its losses are NaN); the summary lists it.
    by_index = {c.index: c for c in cells}
    every_record += [dict(r, model=f"round {round_index} {by_index[r['cell']].label}")
                     for r in metrics]

  rows = design_report.width_rows(search.results(), predicted, len(seeds))
  summary = design_report.write(config, wd, task, ref[widths[0]], rows, search.round_index,
                                trained, time.perf_counter() - start,
                                reports.diverged_section(every_record, "model",
                                                         lambda r: r["model"]))
  return reports.RunReport(wd, trained, time.perf_counter() - start, summary)
