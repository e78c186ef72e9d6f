"""The injection study's frequency sweep of one size: its cells as one ensemble program against
the same cells trained one at a time, side by side in one run.

  python -m benchmarks.lm_injection                     # the smallest size of the CPU default
  python -m benchmarks.lm_injection --size=cpu_d64 --config=configs/lm_size_by_frequency.py

Two measurements, each side by side:
- steady state: one chunk of steps, exactly as the study trains it (every chunk's text batch
  generated on the device, the cells' injections planned on the host and placed, then one
  scanned dispatch); one at a time, each cell generates its own text and runs its own compiled
  program. Every timer is compiled and warmed up first;
- whole runs: the size's part of the study end to end (compilation, training, evaluation,
  checkpoints, manifests, report) as one ensemble, and with mesh.one_program_per_cell, which
  compiles and trains each cell as its own program, as a run per cell would.
Timers are interleaved and repeated, and medians are compared. model-tokens/s = cells x steps
x rows x seq_len / seconds. JSON in benchmarks/results/lm_injection_<platform>.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from benchmarks import timing
from rare_tasks.core import mesh as core_mesh
from rare_tasks.core.progress import log
from rare_tasks.lm import data, grid, grid_config, grid_study, specs, tasks
from rare_tasks.lm.program import TextProgram

RESULTS = timing.REPO / "benchmarks" / "results"


def programs(c, sc, cells: list[grid.Cell], source: data.TextSource,
             task_list: Sequence[tasks.Task], wd: Path, one_per_cell: bool) -> list[TextProgram]:
  """The cells of one size and length as the study builds its programs: one ensemble, or one
  per cell."""
  devices = jax.devices()
  out = []
  for name, cs in grid.programs(cells, one_per_cell):
    mesh = specs.ensemble_mesh(sc, len(cs), devices, 1)
    plan = grid_study.Plan(name, sc, cs, specs.ensemble_trainer(sc, source.vocab_size, len(cs),
                                                                mesh))
    out.append(grid_study.program_of(plan, c, wd, source, task_list, None))
  return out


class Timed:
  """Programs of cells, compiled and warmed up; `run` times one chunk of each in turn, as the
  engine trains it (text batches, injected rows planned and written to the manifests, one
  scanned dispatch)."""

  def __init__(self, programs: list[TextProgram], steps: int):
    self.programs, self.steps = programs, steps
    self.states = [p.init() for p in programs]
    self.step = 0
    self.run()  # compile and warm up

  def run(self) -> float:
    start = time.perf_counter()
    for k, p in enumerate(self.programs):
      self.states[k], parts = p.train(self.states[k], self.step, self.steps)
      jax.block_until_ready((self.states[k], parts))
    self.step += self.steps
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict[str, Any]:
  c = timing.load_config(args.config, args.preset)
  devices = jax.devices()
  c, sizes = grid_config.resolve(c, devices[0].platform)
  size = args.size or min(sizes, key=lambda s: sizes[s].model.d_model * sizes[s].model.num_layers)
  sc = sizes[size]
  source = data.source_of(sc)
  task_list = grid.tasks_of(c, source.eos_id)
  cells = [x for x in grid.cells(c)[size] if x.steps == grid.lengths(c)[0]]
  steps = args.steps or c.train.steps_per_dispatch
  with tempfile.TemporaryDirectory() as wd:
    ensemble = Timed(programs(c, sc, cells, source, task_list, Path(wd) / "ensemble",
                              one_per_cell=False), steps)
    alone = Timed(programs(c, sc, cells, source, task_list, Path(wd) / "alone",
                           one_per_cell=True), steps)
    raw = timing.interleaved({"ensemble": ensemble.run, "one at a time": alone.run},
                             args.repeats)
  tokens = len(cells) * steps * sc.train.batch_size * c.data.seq_len
  out = {"size": size, "cells": len(cells), "steps_per_chunk": steps,
         "mesh": dict(ensemble.programs[0].trainer.mesh.shape), "cases": {}}
  for name, times in raw.items():
    s = statistics.median(times)
    out["cases"][name] = {"median_s": s, "raw_s": times, "model_tokens_per_s": tokens / s}
  cases = out["cases"]
  out["ensemble_over_one_at_a_time"] = (cases["ensemble"]["model_tokens_per_s"]
                                        / cases["one at a time"]["model_tokens_per_s"])
  ratios = [a / b for a, b in zip(raw["one at a time"], raw["ensemble"])]
  out["ratio_range"] = [min(ratios), max(ratios)]
  return out


def whole_runs(args: argparse.Namespace, size: str) -> dict[str, Any]:
  """The size's cells trained end to end as one ensemble and one program per cell."""
  config = timing.load_config(args.config, args.preset)
  config.grid.size = (size,)
  config.checkpoint_interval_s = 1e9  # only the final checkpoint, both ways
  alone = timing.load_config(args.config, args.preset)
  alone.grid.size, alone.checkpoint_interval_s = (size,), 1e9
  alone.mesh.one_program_per_cell = True
  root = Path(tempfile.mkdtemp(prefix="lm_injection_bench_"))
  runs = iter(range(10**6))

  def timer(c):
    def run() -> float:
      start = time.perf_counter()
      grid_study.run(c, root / f"run{next(runs)}")
      return time.perf_counter() - start
    return run

  level = log.level
  log.setLevel("WARNING")
  try:
    raw = timing.interleaved({"ensemble": timer(config), "one at a time": timer(alone)},
                             args.whole_repeats)
  finally:
    log.setLevel(level)
    shutil.rmtree(root, ignore_errors=True)
  cells = len(grid.cells(config)[size])
  tokens = cells * config.train.steps * config.train.batch_size * config.data.seq_len
  out = {"steps": config.train.steps, "cases": {}}
  for name, times in raw.items():
    s = statistics.median(times)
    out["cases"][name] = {"median_s": s, "raw_s": times, "model_tokens_per_s": tokens / s}
  out["ensemble_over_one_at_a_time"] = (out["cases"]["one at a time"]["median_s"]
                                        / out["cases"]["ensemble"]["median_s"])
  return out


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="configs/lm_size_by_frequency.py")
  p.add_argument("--preset", default="default")
  p.add_argument("--size", default="", help="a size of the grid (default: the smallest)")
  p.add_argument("--steps", type=int, default=0, help="steps per chunk (0: the config's)")
  p.add_argument("--repeats", type=int, default=7)
  p.add_argument("--whole_repeats", type=int, default=3, help="repeats of the whole runs "
                 "(0: skip them)")
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  args = _arguments(argv)
  core_mesh.use_cpu_cores()  # before any JAX computation, as experiments.main does
  device = jax.devices()[0]
  r = {**timing.environment(device), "settings": vars(args), **measure(args)}
  if args.whole_repeats:
    r["whole_runs"] = whole_runs(args, r["size"])
  print(f"{r['size']}: {r['cells']} cells, chunks of {r['steps_per_chunk']} steps, "
        f"mesh {r['mesh']}")
  for name, v in r["cases"].items():
    print(f"{name:<16} {v['median_s']:8.3f} s/chunk {v['model_tokens_per_s']:>12,.0f} "
          "model-tokens/s")
  lo, hi = r["ratio_range"]
  print(f"ensemble over one at a time: {r['ensemble_over_one_at_a_time']:.2f}x "
        f"(per repeat {lo:.2f}-{hi:.2f}x)")
  if "whole_runs" in r:
    w = r["whole_runs"]
    print(f"whole runs of {w['steps']} steps: ensemble {w['cases']['ensemble']['median_s']:.1f} s"
          f", one at a time {w['cases']['one at a time']['median_s']:.1f} s: "
          f"{w['ensemble_over_one_at_a_time']:.2f}x")
  RESULTS.mkdir(parents=True, exist_ok=True)
  path = RESULTS / f"lm_injection_{device.platform}.json"
  path.write_text(json.dumps(r, indent=2) + "\n")
  print(f"wrote {path}")
  return r


if __name__ == "__main__":
  main()
