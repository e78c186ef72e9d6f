"""Speed of the grid study's compiled ensembles, on the default width x frequency grid.

  python -m benchmarks.grid [--repeats 5] [--steps 200] [--skip_main_job] [--end_to_end_rounds 3]
                           [--torch_python auto|none|PATH] [--out PATH]

Measures, in one process, and writes benchmarks/results/grid.json:

1. Ensemble vs one at a time. For each width of the default grid, its 12 cells (6 frequencies x
   2 seeds) as the trainer lays them out (streams = seeds, members = frequencies) trained as one
   ensemble, against the same 12 cells each trained alone by the same code (an ensemble of S=1,
   P=1, run 12 times). Both run the jitted `ensemble.train_chunk` for `--steps` steps, compiled
   before timing, with the state donated as in the trainer; the two are timed in turn within each
   repeat (their order alternating) and the medians over `--repeats` compared as model-steps/s.
2. FLOP/s. The widest group's training step (analytic model FLOPs, see FLOP_FORMULA) against a
   jitted float32 2048 x 2048 @ 2048 x 2048 matmul timed beside it.
3. Wall time of the default main job (`experiments.main` on configs/width_by_frequency.py in a
   fresh temporary work directory), end to end as a subprocess; --skip_main_job leaves it out.
4. The grid end to end (--end_to_end_rounds rounds, default 3; 0 leaves it out): END_TO_END_GRID,
   16 tasks x 8 features, batch 512, widths 16 to 128, 3 rare frequencies x 2 seeds, 2,000
   steps, as `experiments.main` subprocesses. Each round: a first invocation with an empty
   compilation cache and a fresh work directory, a second with the cache it left and another
   fresh work directory, then the second run invoked again (a re-report). Medians of the wall
   times, whole-run model-steps/s, and the whole invocation's model FLOP/s as a fraction of the
   matmul rate of section 2; the two invocations' results.csv must be identical. Beside them,
   first in each round, the same grid written the straightforward eager PyTorch way
   (benchmarks/reference/grid_torch.py: one model per cell in turn, vectorised sampler), run by
   --torch_python (auto: this Python, if it has torch); the ratios of the medians.
5. Where the time goes: the same grid's first and second invocation under
   benchmarks.grid_profile (imports, trace, lower, compile or load, train steps, evaluation, host
   measurement, checkpoints, reports), --end_to_end_rounds rounds, medians per phase.

The ensemble is timed twice: on one device, and as the trainer places it, sharded over all local
devices (on CPU, one device per core, as `experiments.main` sets up). The loop of single cells
runs on one device: a single cell has no ensemble axis to shard.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax

from benchmarks import timing
from rare_tasks.core import mesh
from rare_tasks.synthetic import ensemble, training
from rare_tasks.synthetic.grid import Cell, Group, expand, group_cells
from rare_tasks.synthetic.models import model_of
from rare_tasks.synthetic.tasks import task_of

REPO = timing.REPO
CONFIG_FILE = "configs/width_by_frequency.py"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "grid.json"
TORCH_REFERENCE = REPO / "benchmarks" / "reference" / "grid_torch.py"
MATMUL_SIZE = 2048
FLOP_FORMULA = ("per member step: 3 * (2*B*d*N + 2*B*N*(K*m)) = forward (encoder 2*B*d*N, heads "
                "2*B*N*(K*m)) plus backward counted as twice the forward; input sampling "
                "(x = z @ Q^T, 2*B*d*d per stream step), the loss and the optimiser are not "
                "counted")


def model_flops_per_member_step(batch_size: int, input_dim: int, width: int,
                                num_outputs: int) -> int:
  forward = 2 * batch_size * input_dim * width + 2 * batch_size * width * num_outputs
  return 3 * forward


def computed_flops_per_member_step(batch_size: int, input_dim: int, width: int,
                                   block_size: int) -> int:
  """The matmul FLOPs the step really does: the encoder's backward needs no input gradient, and
  each example goes through its own head only (m outputs; the grouped heads' padding rows are
  not counted)."""
  encoder = 2 * batch_size * input_dim * width
  heads = 2 * batch_size * width * block_size
  return 2 * encoder + 3 * heads


class _Trainer:
  """A compiled `train_chunk` of fixed length and the live states of the ensembles it trains.

  Every ensemble passed in must have the same (S, P) layout: one executable serves them all.
  """

  def __init__(self, spec: ensemble.EnsembleSpec, layouts: Sequence[Sequence[Sequence[Cell]]],
               task, num_steps: int, device: jax.Device):
    num_members = len(layouts[0][0])
    self.consts = [jax.device_put(training.group_constants(task, rows), device)
                   for rows in layouts]
    init = jax.jit(partial(ensemble.init_state, spec, num_members=num_members))
    self.states = [init(c) for c in self.consts]
    jax.block_until_ready(self.states)
    start = time.perf_counter()
    self._chunk = jax.jit(partial(ensemble.train_chunk, spec, num_steps=num_steps),
                          donate_argnums=0).lower(self.states[0], self.consts[0]).compile()
    self.compile_s = time.perf_counter() - start
    start = time.perf_counter()
    self.run_one(0)  # warm-up: first execution, not timed
    self.warmup_s = time.perf_counter() - start

  def run_one(self, i: int) -> None:
    self.states[i], loss = self._chunk(self.states[i], self.consts[i])
    jax.block_until_ready((self.states[i], loss))

  def run_all(self) -> list[float]:
    """Each ensemble in turn, waiting for each; returns the seconds of each."""
    times = []
    for i in range(len(self.states)):
      start = time.perf_counter()
      self.run_one(i)
      times.append(time.perf_counter() - start)
    return times



def bench_group(config, group: Group, task, args, device: jax.Device,
                extra_timers: dict[str, Callable[[], float]] | None = None) -> dict[str, Any]:
  """Ensemble vs one at a time for one group (and any extra timers, interleaved with them)."""
  spec = ensemble.EnsembleSpec(model_of(config.model.name, group.static, task), task,
                               training.train_spec_of(config))
  ens = _Trainer(spec, [group.cells], task, args.steps, device)
  singles = _Trainer(spec, [((c,),) for c in group.flat_cells()], task, args.steps, device)
  sharded = timing.ShardedGroup(config, group, task, args.steps)
  timers: dict[str, Callable[[], Any]] = {
      "ensemble": lambda: ens.run_all()[0], "loop": singles.run_all,
      "ensemble_all_devices": sharded.run}
  timers.update(extra_timers or {})
  raw = timing.interleaved(timers, args.repeats)
  num_cells = len(group.flat_cells())
  ens_s = statistics.median(raw["ensemble"])
  loop_totals = [sum(t) for t in raw["loop"]]
  loop_s = statistics.median(loop_totals)
  all_s = statistics.median(raw["ensemble_all_devices"])
  model_steps = num_cells * args.steps
  result = {
      "group": group.name, "width": group.static["width"], "cells": num_cells,
      "streams": group.num_streams, "members": group.num_members,
      "ensemble_median_s": ens_s, "loop_median_s": loop_s,
      "ensemble_model_steps_per_s": model_steps / ens_s,
      "loop_model_steps_per_s": model_steps / loop_s,
      "ratio_ensemble_over_loop": loop_s / ens_s,
      "all_devices": jax.local_device_count(),
      "ensemble_all_devices_median_s": all_s,
      "ensemble_all_devices_model_steps_per_s": model_steps / all_s,
      "ratio_ensemble_all_devices_over_loop": loop_s / all_s,
      "ensemble_all_devices_raw_s": raw["ensemble_all_devices"],
      "ensemble_raw_s": raw["ensemble"], "loop_raw_s": loop_totals, "loop_cell_raw_s": raw["loop"],
      "compile_s": {"ensemble": ens.compile_s, "single_cell": singles.compile_s},
      "first_run_s": {"ensemble": ens.warmup_s, "single_cell": singles.warmup_s},
  }
  for name in extra_timers or {}:
    result[name + "_raw_s"] = raw[name]
  return result


def run_main_job() -> dict[str, Any]:
  """The default study end to end, as a subprocess in a fresh temporary work directory."""
  print("main job: running the default study end to end ...", flush=True)
  with tempfile.TemporaryDirectory(prefix="bench_grid_") as tmp:
    cmd = [sys.executable, "-m", "experiments.main", f"--config={CONFIG_FILE}",
           f"--workdir={Path(tmp) / 'workdir'}", "--overwrite"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
  print(f"main job: {wall:.1f} s wall (exit {proc.returncode})")
  return {"command": " ".join(cmd[1:]), "wall_s": wall, "returncode": proc.returncode,
          "stdout_tail": proc.stdout[-2000:], "stderr_tail": proc.stderr[-2000:]}


# The end-to-end grid, once: the config overrides, the flags and the reference's arguments are
# all derived from it.
END_TO_END = {"train.batch_size": 512, "grid.width": (16, 32, 64, 128),
              "grid.frequency": (1e-2, 2.4e-2, 5.7e-2), "grid.seed": (0, 1),
              "train.steps": 2000}
END_TO_END_GRID = tuple(f"--config.{k}={v}".replace(" ", "") for k, v in END_TO_END.items())


def _end_to_end_config():
  config = timing.load_config(CONFIG_FILE)
  for key, value in END_TO_END.items():
    section, field = key.split(".")
    config[section][field] = value
  return config


def _invocation(workdir: Path, cache: Path) -> float:
  cmd = [sys.executable, "-m", "experiments.main", f"--config={CONFIG_FILE}", *END_TO_END_GRID,
         f"--workdir={workdir}", f"--compilation_cache_dir={cache}"]
  return _timed_subprocess(cmd)


def _timed_subprocess(cmd: list[str]) -> float:
  start = time.perf_counter()
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
  wall = time.perf_counter() - start
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
  return wall


def _torch_reference(python: str, out: Path) -> float:
  listed = {name: ",".join(map(str, END_TO_END[key])) for name, key in (
      ("widths", "grid.width"), ("rare_frequencies", "grid.frequency"),
      ("seeds", "grid.seed"))}
  cmd = [python, str(TORCH_REFERENCE), *(f"--{k}={v}" for k, v in listed.items()),
         f"--steps={END_TO_END['train.steps']}",
         f"--batch_size={END_TO_END['train.batch_size']}", f"--out={out}"]
  return _timed_subprocess(cmd)


def run_end_to_end(rounds: int, matmul_flop_per_s: float, python: str | None) -> dict[str, Any]:
  """The END_TO_END_GRID study end to end: the eager PyTorch reference (when `python` is
  given), a first and a second invocation and a re-report, in turn each round."""
  config = _end_to_end_config()
  task = task_of(config)
  cells = expand(config, task)
  outputs = task.num_tasks * task.block_size
  flops = sum(model_flops_per_member_step(config.train.batch_size, task.input_dim,
                                          c.values["width"], outputs)
              for c in cells) * config.train.steps
  walls: dict[str, list[float]] = {"first": [], "second": [], "re_report": []}
  if python is not None:
    walls["torch_eager"] = []
  identical = []
  for r in range(rounds):
    with tempfile.TemporaryDirectory(prefix="bench_grid_e2e_") as tmp:
      t = Path(tmp)
      if python is not None:
        walls["torch_eager"].append(_torch_reference(python, t / "torch.json"))
      walls["first"].append(_invocation(t / "first", t / "cache"))
      walls["second"].append(_invocation(t / "second", t / "cache"))
      walls["re_report"].append(_invocation(t / "second", t / "cache"))
      identical.append((t / "first" / "results.csv").read_bytes()
                       == (t / "second" / "results.csv").read_bytes())
    print(f"end to end, round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s"
                                                     for k, v in walls.items()), flush=True)
  med = {k: statistics.median(v) for k, v in walls.items()}
  model_steps = len(cells) * config.train.steps
  out = {
      "grid": list(END_TO_END_GRID), "cells": len(cells), "rounds": rounds, "raw_s": walls,
      "median_s": med, "results_identical_first_vs_second": identical,
      "model_steps_per_s": {k: model_steps / med[k] for k in ("first", "second")},
      "model_flops": flops,
      "ideal_s_at_matmul_rate": flops / matmul_flop_per_s,
      "fraction_of_matmul_rate": {k: flops / med[k] / matmul_flop_per_s
                                  for k in ("first", "second")},
      "timing": "wall of each subprocess, start-up included; medians over rounds; in each "
                "round the PyTorch reference, the first, the second invocation and the "
                "re-report run in turn"}
  if python is not None:
    out["torch_reference"] = {"script": str(TORCH_REFERENCE.relative_to(REPO)),
                              "python": python}
    out["speedup_over_torch_eager"] = {k: med["torch_eager"] / med[k]
                                       for k in ("first", "second")}
  return out


def run_profile(rounds: int) -> dict[str, Any]:
  """Where the time goes (benchmarks.grid_profile) in a first and a second invocation of
  END_TO_END_GRID, each round with a fresh cache; medians per phase."""
  runs: dict[str, list[dict[str, Any]]] = {"first": [], "second": []}
  for _ in range(rounds):
    with tempfile.TemporaryDirectory(prefix="bench_grid_profile_") as tmp:
      t = Path(tmp)
      for name in runs:
        cmd = [sys.executable, "-m", "benchmarks.grid_profile", f"--out={t / name}.json", "--",
               f"--config={CONFIG_FILE}", *END_TO_END_GRID, f"--workdir={t / name}",
               f"--compilation_cache_dir={t / 'cache'}"]
        wall = _timed_subprocess(cmd)
        result = json.loads((t / f"{name}.json").read_text())
        result["seconds"]["interpreter_start"] = wall - result["in_process_wall_s"]
        result["wall_s"] = wall
        runs[name].append(result)
  table = {name: {phase: statistics.median(r["seconds"][phase] for r in rs)
                  for phase in ("interpreter_start", *rs[0]["phases"])}
           for name, rs in runs.items()}
  return {"median_s": table,
          "wall_median_s": {n: statistics.median(r["wall_s"] for r in rs)
                            for n, rs in runs.items()},
          "cache_read_median_s": {n: statistics.median(r["cache_read_s"] for r in rs)
                                  for n, rs in runs.items()},
          "rounds": rounds, "raw": runs,
          "timing": "benchmarks.grid_profile: every device call waited for where it is made, "
                    "so phases do not overlap (the profiled run is a little slower than an "
                    "unprofiled one); medians per phase over rounds"}


def _print_profile(profile: dict[str, Any]) -> None:
  table = profile["median_s"]
  print(f"where the time goes (medians of {profile['rounds']}, seconds): first | second")
  for phase in table["first"]:
    print(f"  {phase:>20}: {table['first'][phase]:6.2f} | {table['second'][phase]:6.2f}")
  w = profile["wall_median_s"]
  print(f"  {'wall':>20}: {w['first']:6.2f} | {w['second']:6.2f}")


def _print_table(results: dict[str, Any]) -> None:
  rows = results["ensemble_vs_loop"]
  n = jax.local_device_count()
  print(f"model-steps/s; ratios against the loop of single cells (1 device); all = {n} devices")
  print(f"{'width':>5} {'S x P':>6} {'loop':>8} {'ensemble 1 dev':>15} {'ratio':>7} "
        f"{'ensemble all':>13} {'ratio':>7}")
  for r in rows.values():
    print(f"{r['width']:>5} {r['streams']:>2} x {r['members']:<2} "
          f"{r['loop_model_steps_per_s']:>8,.0f} {r['ensemble_model_steps_per_s']:>15,.0f} "
          f"{r['ratio_ensemble_over_loop']:>6.2f}x "
          f"{r['ensemble_all_devices_model_steps_per_s']:>13,.0f} "
          f"{r['ratio_ensemble_all_devices_over_loop']:>6.2f}x")
  f = results["flops"]
  print(f"FLOP/s: width {f['width']} ensemble ({f['cells']} cells) "
        f"{f['achieved_flop_per_s'] / 1e9:.2f} GFLOP/s; {MATMUL_SIZE}^3 float32 matmul "
        f"{f['matmul_flop_per_s'] / 1e9:.2f} GFLOP/s; ratio {f['ratio_achieved_over_matmul']:.3f} "
        f"({f['computed_ratio_achieved_over_matmul']:.3f} counting only the FLOPs computed)")


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5, help="timed runs of each (median)")
  parser.add_argument("--steps", type=int, default=200, help="training steps per timed call")
  parser.add_argument("--skip_main_job", action="store_true", help="do not run the main job")
  parser.add_argument("--end_to_end_rounds", type=int, default=3,
                      help="rounds of the end-to-end grid and of its profile (0: leave out)")
  parser.add_argument("--torch_python", default="auto",
                      help="Python with torch for the eager reference (auto: this one if it "
                           "has torch; none: leave it out)")
  parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
  args = parser.parse_args(argv)
  if args.repeats < 1 or args.steps < 1:
    parser.error("--repeats and --steps must be at least 1")
  if args.end_to_end_rounds < 0:
    parser.error("--end_to_end_rounds must be at least 0")
  return args


def _flops(config, task, w: dict[str, Any], steps: int, matmul_compile_s: float) -> dict:
  """The widest group's achieved FLOP/s against the matmul timed beside it (pops its timings)."""
  outputs = task.num_tasks * task.block_size
  per_member = model_flops_per_member_step(config.train.batch_size, task.input_dim, w["width"],
                                           outputs)
  computed = computed_flops_per_member_step(config.train.batch_size, task.input_dim, w["width"],
                                            task.block_size)
  achieved = per_member * w["cells"] * steps / w["ensemble_median_s"]
  matmul_raw = w.pop("matmul_raw_s")
  matmul_s = statistics.median(matmul_raw)
  matmul_rate = 2 * MATMUL_SIZE ** 3 / matmul_s
  return {
      "formula": FLOP_FORMULA, "width": w["width"], "cells": w["cells"],
      "flops_per_member_step": per_member,
      "flops_per_ensemble_step": per_member * w["cells"],
      "ensemble_median_s": w["ensemble_median_s"], "achieved_flop_per_s": achieved,
      "matmul": {"shape": [MATMUL_SIZE, MATMUL_SIZE, MATMUL_SIZE], "dtype": "float32",
                 "flops": 2 * MATMUL_SIZE ** 3, "compile_s": matmul_compile_s,
                 "raw_s": matmul_raw,
                 "timing": "timed in turn with the widest group's ensemble and loop"},
      "matmul_median_s": matmul_s, "matmul_flop_per_s": matmul_rate,
      "ratio_achieved_over_matmul": achieved / matmul_rate,
      "computed_formula": "per member step: 2 * 2*B*d*N + 3 * 2*B*N*m (no gradient of the "
                          "inputs, each example through its own head); the matmul FLOPs the "
                          "compiled step performs",
      "computed_flops_per_member_step": computed,
      "computed_ratio_achieved_over_matmul":
          computed * w["cells"] * steps / w["ensemble_median_s"] / matmul_rate,
  }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  args = _arguments(argv)
  mesh.use_cpu_cores()  # before any JAX computation, as experiments.main does
  config = timing.load_config(CONFIG_FILE)
  task = task_of(config)
  groups = group_cells(expand(config))
  device = jax.devices()[0]
  widest = max(groups, key=lambda g: g.static["width"])
  results: dict[str, Any] = {
      **timing.environment(device),
      "devices_used": "1 for the loop and the 'ensemble' timings; all local devices for "
                      "'ensemble_all_devices'",
      "settings": {
          "config": CONFIG_FILE, "repeats": args.repeats, "steps_per_call": args.steps,
          "batch_size": config.train.batch_size, "input_dim": task.input_dim,
          "num_tasks": task.num_tasks, "block_size": task.block_size,
          "optimizer": config.train.optimizer, "schedule": config.train.schedule,
          "timing": "median over repeats of block_until_ready'd calls of the compiled "
                    "train_chunk; ensemble and loop (and matmul) timed in turn each repeat, "
                    "order rotating; model-steps = cells x steps"},
      "ensemble_vs_loop": {},
  }
  for group in groups:
    extra: dict[str, Callable[[], float]] = {}
    if group is widest:
      extra["matmul"], matmul_compile_s = timing.matmul_timer(device, MATMUL_SIZE)
    r = bench_group(config, group, task, args, device, extra)
    results["ensemble_vs_loop"][str(r["width"])] = r
    print(f"width {r['width']:>3}: loop {r['loop_model_steps_per_s']:,.0f} model-steps/s, "
          f"ensemble {r['ensemble_model_steps_per_s']:,.0f} on 1 device "
          f"({r['ratio_ensemble_over_loop']:.2f}x), "
          f"{r['ensemble_all_devices_model_steps_per_s']:,.0f} on {r['all_devices']} "
          f"({r['ratio_ensemble_all_devices_over_loop']:.2f}x)", flush=True)
  results["flops"] = _flops(config, task, results["ensemble_vs_loop"][str(widest.static["width"])],
                            args.steps, matmul_compile_s)
  _print_table(results)
  for key, label in (("ratio_ensemble_over_loop", "1 device"),
                     ("ratio_ensemble_all_devices_over_loop", "all devices")):
    ratios = {k: round(v[key], 2) for k, v in results["ensemble_vs_loop"].items()}
    print(f"ensemble ({label}) / loop, model-steps/s by width: {ratios}")
  timing.write_json(args.out, results)
  if args.end_to_end_rounds:
    python = timing.torch_python(args.torch_python)
    if python is None:
      print("no PyTorch reference: this Python has no torch (--torch_python PATH names one)")
    e2e = run_end_to_end(args.end_to_end_rounds, results["flops"]["matmul_flop_per_s"], python)
    results["end_to_end"] = e2e
    m, f = e2e["median_s"], e2e["fraction_of_matmul_rate"]
    print(f"end to end (medians of {e2e['rounds']}): first {m['first']:.1f} s, second "
          f"{m['second']:.1f} s, re-report {m['re_report']:.1f} s; whole run at "
          f"{f['first']:.2f} (first) and {f['second']:.2f} (second) of the matmul rate; "
          f"results identical: {all(e2e['results_identical_first_vs_second'])}")
    if python is not None:
      x = e2e["speedup_over_torch_eager"]
      print(f"eager PyTorch {m['torch_eager']:.1f} s: first {x['first']:.2f}x, second "
            f"{x['second']:.2f}x as fast")
    timing.write_json(args.out, results)
    results["profile"] = run_profile(args.end_to_end_rounds)
    _print_profile(results["profile"])
    timing.write_json(args.out, results)
  results["main_job"] = {"skipped": True} if args.skip_main_job else run_main_job()
  timing.write_json(args.out, results, final=True)
  return results


if __name__ == "__main__":
  main()
