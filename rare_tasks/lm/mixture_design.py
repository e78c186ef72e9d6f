"""The language models' mixture design (`lm_mixture_design`; docs/language_models.md, "Mixture
design"): per task, size and run length, the smallest injection frequency at which the task is
learned, found by the bracket-and-refine search (rare_tasks.analysis.frequency_search) instead of
a grid, and what upsampling a small size costs against training a larger one.

A search key is (task, size, run length). Each round, every key still searching proposes its
candidate frequencies; the round trains, per size and length, one ensemble of every candidate of
every task x the grid's seeds (the first round adds one control per seed, which injects
nothing), as an injection study whose grid.frequency holds the round's candidates
(`mixture_config.round_config`), in `rounds/round<r>/` with its own metrics.jsonl, injection
manifests and checkpoints (with config.log.tensorboard, its cells' TensorBoard runs go to
`tensorboard/round<r>/<cell>/`: rare_tasks.core.tensorboard). A cell has learned its task by
the injection study's rule (results.csv's `learned`: the train score named by learned.criterion,
the mean of the last learned.last_evals evaluations, at or above learned.threshold; a diverged
cell learns nothing).
Rounds are a deterministic function of the finished rounds, so a killed run restarted with the
same command reads its finished rounds back from their metrics, resumes the round it was in from
its checkpoints, and goes on.

Writes mixture_design.csv, min_size.csv, tradeoff.csv, figures/mixture_design_<task>.png and
summary.md (rare_tasks.lm.report.mixture_design).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from rare_tasks.analysis import frequency_search
from rare_tasks.core import divergence, engine, tables, tensorboard, workdir
from rare_tasks.core.config import ConfigError
from rare_tasks.core.progress import Progress, log
from rare_tasks.core.report import SUMMARY_FILE, RunReport, declared_files
from rare_tasks.lm import data, grid, grid_study, mixture_config, specs
from rare_tasks.lm import tasks as lm_tasks
from rare_tasks.lm.report import learned_frequency
from rare_tasks.lm.report import mixture_design as report
from rare_tasks.lm.report.mixture_tables import DesignRun
from rare_tasks.lm.report.results_table import result_rows

ROUNDS_DIR = "rounds"
CELLS_FILE = "cells.json"
FILES = declared_files((ROUNDS_DIR, specs.RUN_FILE, data.TOKENIZER_FILE, SUMMARY_FILE,
                        tensorboard.DIR), report.FILES)
METRICS_KEY = grid_study.METRICS_KEY
Key = tuple[str, str, int]  # (task, size, run length)
# Trains one round's cells into its directory (its metrics.jsonl); returns the steps trained.
RoundTrainer = Callable[[ml_collections.ConfigDict, Path, dict[str, list[grid.Cell]]], int]


def keys_of(c: ml_collections.ConfigDict, params: dict[str, int]) -> list[Key]:
  """Every search key: per task, the sizes by non-embedding parameters, each run length."""
  sizes = sorted(c.grid.size, key=lambda s: params[s])
  return [(t, s, n) for t in c.grid.task for s in sizes for n in grid.lengths(c)]


def centers_of(c: ml_collections.ConfigDict, keys: Sequence[Key]) -> dict[Key, tuple[float, str]]:
  """Each key's first-round centre and where it came from: the threshold of a finished injection
  study (design.centers_from; under learned.criterion, at the same task, size and run length;
  the geometric middle of its range's bracket when that has a lower end), else
  design.initial_frequency."""
  d = c.design
  found: dict[Key, float] = {}
  if d.centers_from:
    path = Path(d.centers_from) / learned_frequency.THRESHOLDS_FILE
    if not path.exists():
      raise ConfigError(f"config.design.centers_from = {d.centers_from!r}: allowed: '' or the "
                        f"work directory of a finished lm_size_by_frequency run (it has no "
                        f"{learned_frequency.THRESHOLDS_FILE})")
    for r in tables.read_csv(path):
      if r["metric"] != c.learned.criterion:
        continue
      t, low = float(r["threshold"]), float(r["threshold_low"])
      if math.isfinite(t):
        found[(r["task"], r["size"], int(r["steps"]))] = math.sqrt(low * t) if low > 0 else t
  where = f"the injection study in {d.centers_from}" if d.centers_from else ""
  return {k: (found[k], where) if k in found
          else (float(d.initial_frequency), "design.initial_frequency") for k in keys}


def round_cells(c: ml_collections.ConfigDict, candidates: dict[Key, np.ndarray],
                controls: bool) -> dict[str, list[grid.Cell]]:
  """One round's cells per size: per run length, every task's candidates x seeds (members in
  that order), then with `controls` one control per seed; indices count over the round."""
  out: dict[str, list[grid.Cell]] = {}
  axis = len(c.grid.steps) > 0
  gap = int(c.grid.gap[0])
  index = 0
  for size in c.grid.size:
    for steps in grid.lengths(c):
      values = [(float(f), (task,), int(s)) for (task, sz, n), fs in candidates.items()
                if sz == size and n == steps for f in fs for s in c.grid.seed]
      if controls:
        values += [(0.0, (), int(s)) for s in c.grid.seed]
      for member, (f, tasks, s) in enumerate(values):
        out.setdefault(size, []).append(
            grid.Cell(index, member, size, f, gap if tasks else 1, tasks, s, steps, axis))
        index += 1
  return out


def outcomes(rc: ml_collections.ConfigDict, info: dict[str, Any],
             cells: dict[str, list[grid.Cell]], records: list[dict[str, Any]],
             task_list: Sequence[lm_tasks.Task], round_index: int) -> list[dict[str, Any]]:
  """One row per finished cell of a round: its task ('' for a control), size, run length,
  seed, frequency, whether it learned its task by the injection study's rule (results.csv's
  learned), whether it diverged (and the step), its first learned step and its final
  background validation loss."""
  final = {r["cell"]: r for r in records}
  by_cell = {}  # a control has a row per task: its first is read
  for row in result_rows(rc, info, cells, records, task_list):
    task = row["task"] if row["frequency"] > 0 else ""
    by_cell.setdefault((task, row["size"], row["steps"], row["frequency"], row["seed"]), row)
  out = []
  for size_cells in cells.values():
    for cell in size_cells:
      record = final.get(cell.index)
      if record is None or record["step"] != cell.steps:
        continue
      task = cell.tasks[0] if cell.tasks else ""
      row = by_cell.get((task, cell.size, cell.steps, cell.frequency, cell.seed), {})
      out.append({"round": round_index, "task": task,
                  "size": cell.size, "steps": cell.steps, "seed": cell.seed,
                  "frequency": cell.frequency, "learned": bool(row.get("learned", False))
                  and not cell.is_control, "diverged": bool(row.get("diverged", False)),
                  "first_learned_step": row.get("first_learned_step", ""),
                  "val_loss": tables.number(record.get("val_loss")),
                  divergence.FIELD: record.get(divergence.FIELD)})
  return out


def learned_of(found: Sequence[dict[str, Any]], candidates: dict[Key, np.ndarray],
               seeds: Sequence[int]) -> dict[Key, np.ndarray]:
  """Per key, whether each (seed, candidate) learned, bool (S, C); ValueError for a candidate
  without a finished cell."""
  by = {(o["task"], o["size"], o["steps"], o["frequency"], o["seed"]): o["learned"]
        for o in found if o["task"]}
  out = {}
  for key, fs in candidates.items():
    x = np.zeros((len(seeds), len(fs)), bool)
    for i, s in enumerate(seeds):
      for j, f in enumerate(fs):
        at = (*key, float(f), int(s))
        if at not in by:
          raise workdir.WorkdirError(f"round cell {at} has no final record")
        x[i, j] = by[at]
    out[key] = x
  return out


def _check_stored(rd: Path, cells: dict[str, list[grid.Cell]]) -> None:
  """Writes the round's cells.json, refusing a directory whose round holds other cells."""
  text = json.dumps([cell.record() for cs in cells.values() for cell in cs], indent=1) + "\n"
  stored = rd / CELLS_FILE
  if stored.exists() and json.loads(stored.read_text()) != json.loads(text):
    raise workdir.WorkdirError(
        f"{rd} holds a search round with other cells than this run proposes (the search has "
        f"changed since); use another --workdir, or delete {rd.parent} to search again")
  workdir.write_text(stored, text)


def _finished(records: list[dict[str, Any]], cells: dict[str, list[grid.Cell]]) -> bool:
  last = {r["cell"]: r["step"] for r in records}
  return all(last.get(cell.index) == cell.steps for cs in cells.values() for cell in cs)


class RealRounds:
  """Trains a round as the injection study trains a grid: per size and run length one ensemble
  program (or one per cell when it does not fit), each resumed from its checkpoints; with
  config.log.tensorboard, the round <wd>/rounds/round<r>/'s runs in <wd>/tensorboard/round<r>/."""

  def __init__(self, sizes: dict[str, ml_collections.ConfigDict], source: data.TextSource,
               task_list: Sequence[lm_tasks.Task], devices: list[jax.Device],
               starts: dict[str, Any], flops: dict[str, float],
               callbacks: Sequence[engine.Callback]):
    self.sizes, self.source, self.task_list, self.devices = sizes, source, task_list, devices
    self.starts, self.flops, self.callbacks = starts, flops, callbacks

  def __call__(self, rc: ml_collections.ConfigDict, rd: Path,
               cells: dict[str, list[grid.Cell]]) -> int:
    plans: list[grid_study.Plan] = []
    for size, cs in cells.items():
      plans += grid_study.size_plans(rc, self.sizes[size], size, cs, self.source,
                                     self.devices)[0]
    progress = Progress([(p.name, len(p.cells), p.c.train.steps, self.flops[p.c.model.preset])
                         for p in plans])
    trained = 0
    board = rd.parents[1] / tensorboard.DIR / rd.name
    with grid_study.tensorboard_callbacks(rc, board, cells) as logged:
      for plan in plans:
        log.info("%s: %d cell(s), mesh %s", plan.name, len(plan.cells),
                 dict(plan.trainer.mesh.shape))
        program = grid_study.program_of(plan, rc, rd, self.source, self.task_list,
                                        self.starts[plan.c.model.preset])
        trained += engine.run(program, rd, [*self.callbacks, *logged], progress,
                              rc.checkpoint_interval_s)
    return trained


def run_info(sizes: dict[str, ml_collections.ConfigDict], source: data.TextSource,
             platform: str) -> dict[str, Any]:
  """run.json: per size its parameters (total, non-embedding), training FLOPs per token and
  tokens per step; the source and its loss floor."""
  info: dict[str, Any] = {"sizes": {}, "source": source.describe(),
                          "loss_floor": source.loss_floor(), "platform": platform}
  for size, sc in sizes.items():
    info["sizes"][size] = specs.size_info(sc, specs.model_spec(sc, source.vocab_size))
  return info


def search_rounds(c: ml_collections.ConfigDict, wd: Path,
                  search: frequency_search.FrequencySearch, info: dict[str, Any],
                  task_list: Sequence[lm_tasks.Task], train_round: RoundTrainer
                  ) -> tuple[list[dict[str, Any]], int]:
  """Runs the search to its end, each round trained (or read back when finished) in
  rounds/round<r>/; returns every cell's outcome and the steps this invocation trained."""
  seeds = [int(s) for s in c.grid.seed]
  found: list[dict[str, Any]] = []
  trained = 0
  while (candidates := search.next_round()) is not None:
    index = search.round_index
    cells = round_cells(c, candidates, controls=index == 0)
    rc = mixture_config.round_config(c, tuple(sorted({float(f) for fs in candidates.values()
                                                      for f in fs})))
    rd = wd / ROUNDS_DIR / f"round{index}"
    rd.mkdir(parents=True, exist_ok=True)
    _check_stored(rd, cells)
    log.info("round %d: %d cells (%s)", index, sum(map(len, cells.values())), "; ".join(
        f"{t} {s} {n} steps: {fs[0]:.3g}..{fs[-1]:.3g}" for (t, s, n), fs in candidates.items()))
    if not _finished(workdir.read_metrics(rd, METRICS_KEY), cells):
      trained += train_round(rc, rd, cells)
    records = workdir.read_metrics(rd, METRICS_KEY)
    these = outcomes(rc, info, cells, records, task_list, index)
    found += these
    search.record(learned_of(these, candidates, seeds), candidates)
  return found, trained


def run(config: ml_collections.ConfigDict, workdir_path: str | Path, overwrite: bool = False,
        run_files: Sequence[str] = FILES, devices: Sequence[jax.Device] | None = None,
        callbacks: Sequence[engine.Callback] = (),
        train_round: RoundTrainer | None = None) -> RunReport:
  """Runs (or resumes, or only reports) the mixture design of `config` in `workdir_path`.

  callbacks: the engine's, run beside the study's own; train_round: what trains a round (the
  real training unless given; a test plants a learner here).
  """
  start = time.perf_counter()
  devices = list(devices) if devices is not None else jax.devices()
  c, sizes = mixture_config.resolve(config, devices[0].platform)
  source = data.source_of(next(iter(sizes.values())))
  if source.vocab_size != c.data.vocab_size:
    raise ConfigError(
        f"config.data.vocab_size = {c.data.vocab_size!r}: allowed: the model's vocabulary on "
        f"this text, {source.vocab_size:,}")
  task_list = grid.tasks_of(c, source.eos_id)
  info = run_info(sizes, source, devices[0].platform)
  params = {s: info["sizes"][s]["params"]["non_embedding"] for s in sizes}
  keys = keys_of(c, params)
  centers = centers_of(c, keys)
  wd = workdir.prepare(workdir_path, c, overwrite, defaults=mixture_config.base_config(),
                       run_files=run_files, not_identity=mixture_config.NOT_IDENTITY)
  specs.keep_text(wd, source, info)
  if train_round is None:
    checkpoint = specs.checkpoint_of(c)
    starts = {s: specs.initial_params(sc, specs.model_spec(sc, source.vocab_size), checkpoint)
              for s, sc in sizes.items()}
    train_round = RealRounds(sizes, source, task_list, devices, starts,
                             {s: info["sizes"][s]["flops_per_token"] for s in sizes}, callbacks)
  seeds = [int(s) for s in c.grid.seed]
  search = frequency_search.FrequencySearch(keys, len(seeds), {k: v[0] for k, v in
                                                               centers.items()},
                                            frequency_search.SearchSettings.of(c.design))
  log.info("mixture design: %d key(s) (task, size, steps) x seeds %s, on %d device(s); "
           "workdir %s", len(keys), seeds, len(devices), wd)
  found, trained = search_rounds(c, wd, search, info, task_list, train_round)
  design = DesignRun(
      config=c, wd=wd, info=info, keys=keys, seeds=seeds,
      tested={k: search.tested(k) for k in keys}, outcomes=found, centers=centers,
      rounds=search.round_index)
  summary = report.write(design, trained, time.perf_counter() - start)
  return RunReport(wd, trained, time.perf_counter() - start, summary)
