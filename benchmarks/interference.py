"""Cost of the gradient-interference matrix against a training step, for T tasks.

  python -m benchmarks.interference [--repeats 5] [--calls 20] [--tasks 16,64] [--width 64]
      [--batch_size 256] [--input_dim 128] [--out PATH]

For each T of --tasks: a `LinearMixture` of K = T tasks with block size m = input_dim // T (so
d = T * m stays the same across T; one rare task), and one `EncoderHeads` model of width --width
trained alone (an ensemble of one stream and one member, Adam, constant learning rate) for a few
steps first, so that the heads are no longer zero and every task has a gradient. Then, in one
process, timed in turn within each repeat (order rotating), all at full float32 matmul precision
(`ensemble.MATMUL_PRECISION`), each compiled and warmed up before timing:

1. step: one jitted `ensemble.train_step` of the model on --batch_size examples (input sampling,
   forward, backward and the optimiser update), called back to back; "step_in_chunk" is the same
   step inside `ensemble.train_chunk` (a scan of --calls steps), as the trainer trains.
2. ours: `interference.per_task_gradients` of `ensemble.task_loss` on a balanced batch of the
   same total size (batch_size // T examples per task, leading axis T), then
   `interference.interference_measures` on the shared parameters (all but the heads), as one
   jitted function.
3. naive: `interference.per_task_gradients_naive`, one backward pass per task over the whole
   batch with the loss masked to that task's examples, then the same measures, as one jitted
   function.

Both methods get the same examples; the largest absolute difference of their cosine matrices is
reported. A breakdown of ours follows: its per-task gradients alone, the measures alone (on
precomputed gradients), and one plain backward pass of the mean loss over the whole batch.

Each timing is the median over --repeats of the mean time of --calls calls (dispatched back to
back, then `block_until_ready`).

Then, with --grid_repeats > 0, the cost of measuring during a study: the wall time of
`python -m experiments.main --config=configs/interference.py` (its default grid and evaluation
interval, --grid_steps steps) with allocation and interference on, against the same run with
them off, each in a fresh process and work directory, on and off in turn; the median ratio.

Writes benchmarks/results/interference.json and prints a table.
"""

from __future__ import annotations

import argparse
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
import jax.numpy as jnp
import numpy as np

from benchmarks import timing
from rare_tasks.analysis import interference
from rare_tasks.synthetic import ensemble
from rare_tasks.synthetic.models.encoder_heads import EncoderHeads
from rare_tasks.synthetic.tasks import linear_measures, linear_mixture
from rare_tasks.synthetic.tasks.linear_mixture import LinearMixture

REPO = timing.REPO
DEFAULT_OUT = REPO / "benchmarks" / "results" / "interference.json"
TARGET_RATIO = 2.0  # ours should cost at most this many training steps at the smallest T
LEARNING_RATE = 3e-3
RARE_FREQUENCY = 1e-2
COMMON_EXPONENT = 1.5
BETA = 1.0
SEED = 0


def _precise(fn: Callable[..., Any]) -> Callable[..., Any]:
  """fn traced at the ensemble's matmul precision."""
  def wrapped(*args):
    with jax.default_matmul_precision(ensemble.MATMUL_PRECISION):
      return fn(*args)
  return wrapped


def _timer(fn: Callable[[], Any], calls: int) -> Callable[[], float]:
  """A timer of the mean seconds per call of `fn` over `calls` calls, waiting at the end."""
  def timed() -> float:
    start = time.perf_counter()
    out = None
    for _ in range(calls):
      out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls
  return timed



def masked_task_loss(spec: ensemble.EnsembleSpec, params: dict, task: int,
                     batch: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
  """Task `task`'s loss on a mixed batch (x (B, d), z (B, K*m), tasks (B,)): the mean over the
  examples of that task of the squared error of its own head."""
  x, z, tasks = batch
  _, y = spec.model.apply(params, x)
  err = linear_measures.per_task_squared_error(y, z, spec.task.num_tasks)[:, task]
  mask = (tasks == task).astype(err.dtype)
  return jnp.sum(err * mask) / jnp.maximum(mask.sum(), 1.0)


def _shared(spec: ensemble.EnsembleSpec, grads: dict) -> dict:
  return {name: g for name, g in grads.items() if name not in spec.model.task_specific}


def _compiled(fn: Callable[..., Any], *args) -> tuple[Callable[..., Any], float]:
  """fn jitted at full precision and compiled for args; and the compile seconds."""
  start = time.perf_counter()
  compiled = jax.jit(_precise(fn)).lower(*args).compile()
  return compiled, time.perf_counter() - start


def _trained(num_tasks: int, args: argparse.Namespace):
  """One model of T tasks trained `train_steps` steps: (spec, consts, state, its params)."""
  block_size = max(1, args.input_dim // num_tasks)
  task = LinearMixture(num_tasks=num_tasks, block_size=block_size, num_rare=1)
  model = EncoderHeads(width=args.width, num_tasks=num_tasks, block_size=block_size)
  train = ensemble.TrainSpec(steps=args.train_steps + 10 * args.calls, batch_size=args.batch_size)
  spec = ensemble.EnsembleSpec(model, task, train)
  consts = jax.device_put(ensemble.make_constants(
      task, np.array([SEED]), {"spectrum": task.spectrum(BETA)[None]},
      task.mixture(RARE_FREQUENCY, COMMON_EXPONENT)[None, None], np.array([[LEARNING_RATE]])))
  state = jax.jit(partial(ensemble.init_state, spec, num_members=1))(consts)
  state, _ = jax.jit(partial(ensemble.train_chunk, spec, num_steps=args.train_steps))(
      state, consts)
  return spec, consts, state, jax.tree.map(lambda a: a[0, 0], state["params"])


def _batches(spec: ensemble.EnsembleSpec, consts, batch_size: int):
  """One batch of fresh examples, balanced over the tasks: task t's examples at index t for
  ours, the same examples flattened with their task ids for the naive method."""
  num_tasks = spec.task.num_tasks
  per_task = batch_size // num_tasks
  total = per_task * num_tasks
  sqrt_spectrum = jnp.sqrt(consts["stream"]["spectrum"][0]).reshape(-1)
  x, z = linear_mixture.sample_inputs(jax.random.key(SEED + 1), consts["shared"]["basis"],
                                      sqrt_spectrum, total)
  task_ids = jnp.repeat(jnp.arange(num_tasks, dtype=jnp.int32), per_task)
  balanced = (x.reshape(num_tasks, per_task, -1), z.reshape(num_tasks, per_task, -1))
  return balanced, (x, z, task_ids)


def _programs(spec: ensemble.EnsembleSpec, consts) -> dict[str, Callable[..., Any]]:
  """The functions timed: ours (and its two parts), the naive method, one whole backward pass."""
  num_tasks = spec.task.num_tasks
  freqs = consts["mixture"][0, 0]
  rare = jnp.asarray(ensemble.rare_mask(spec.task))

  def ours_grads(p, batches):
    return _shared(spec, interference.per_task_gradients(partial(ensemble.task_loss, spec), p,
                                                         batches))

  def naive(p, batch):
    grads = interference.per_task_gradients_naive(partial(masked_task_loss, spec), p, batch,
                                                  num_tasks)
    return interference.interference_measures(_shared(spec, grads), freqs, rare)

  def backward(p, batch):
    xb, zb, tb = batch

    def loss(p):
      _, y = spec.model.apply(p, xb)
      return linear_measures.masked_loss(y, zb, tb, num_tasks)
    return jax.grad(loss)(p)

  return {"ours": lambda p, b: interference.interference_measures(ours_grads(p, b), freqs, rare),
          "naive": naive, "ours_grads": ours_grads, "backward": backward,
          "ours_measures": lambda g: interference.interference_measures(g, freqs, rare)}


def _agreement(ours_out: dict, naive_out: dict) -> dict[str, Any]:
  cos_ours, cos_naive = np.asarray(ours_out["cosine"]), np.asarray(naive_out["cosine"])
  return {"cosine_max_abs_diff": float(np.nanmax(np.abs(cos_ours - cos_naive))),
          "cosine_same_nans": bool(np.array_equal(np.isnan(cos_ours), np.isnan(cos_naive))),
          "grad_norm_max_rel_diff": float(np.max(np.abs(ours_out["grad_norm"]
                                                        - naive_out["grad_norm"])
                                                 / np.abs(naive_out["grad_norm"])))}


def bench_tasks(num_tasks: int, args: argparse.Namespace) -> dict[str, Any]:
  """All timings and the agreement check for one number of tasks."""
  spec, consts, state, params = _trained(num_tasks, args)
  balanced, flat = _batches(spec, consts, args.batch_size)
  programs = _programs(spec, consts)
  compiled, compile_s = {}, {}
  for name, inputs in (("ours", balanced), ("naive", flat), ("ours_grads", balanced),
                       ("backward", flat)):
    compiled[name], compile_s[name] = _compiled(programs[name], params, inputs)
  shared_grads = jax.block_until_ready(compiled["ours_grads"](params, balanced))
  compiled["ours_measures"], compile_s["ours_measures"] = _compiled(programs["ours_measures"],
                                                                    shared_grads)
  step_fn, compile_s["step"] = _compiled(partial(ensemble.train_step, spec), state, consts)
  chunk, compile_s["step_in_chunk"] = _compiled(
      partial(ensemble.train_chunk, spec, num_steps=args.calls), state, consts)
  # Warm-ups, and the agreement check.
  agreement = _agreement(jax.device_get(compiled["ours"](params, balanced)),
                         jax.device_get(compiled["naive"](params, flat)))
  live = {"state": state}

  def one_step():
    live["state"], loss = step_fn(live["state"], consts)
    return loss

  def one_chunk():
    live["state"], loss = chunk(live["state"], consts)
    return loss

  calls = {"ours": lambda: compiled["ours"](params, balanced),
           "naive": lambda: compiled["naive"](params, flat),
           "ours_grads": lambda: compiled["ours_grads"](params, balanced),
           "ours_measures": lambda: compiled["ours_measures"](shared_grads),
           "backward": lambda: compiled["backward"](params, flat)}
  for warm in (one_step, one_chunk, *calls.values()):
    jax.block_until_ready(warm())
  timers = {"step": _timer(one_step, args.calls),
            "step_in_chunk": lambda: _timer(one_chunk, 1)() / args.calls,
            **{name: _timer(fn, args.calls) for name, fn in calls.items()}}
  raw = timing.interleaved(timers, args.repeats)
  return _result(spec, args, {n: 1e3 * statistics.median(v) for n, v in raw.items()},
                 agreement, compile_s, raw, shared_grads)


def _result(spec, args, ms, agreement, compile_s, raw, shared_grads) -> dict[str, Any]:
  task = spec.task
  per_task = args.batch_size // task.num_tasks
  return {
      "tasks": task.num_tasks, "block_size": task.block_size, "input_dim": task.input_dim,
      "width": args.width, "batch_size": args.batch_size, "examples_per_task": per_task,
      "interference_batch": per_task * task.num_tasks,
      "shared_params": sum(int(np.prod(g.shape[1:])) for g in jax.tree.leaves(shared_grads)),
      "step_ms": ms["step"], "step_in_chunk_ms": ms["step_in_chunk"], "ours_ms": ms["ours"],
      "naive_ms": ms["naive"], "ours_over_step": ms["ours"] / ms["step"],
      "naive_over_step": ms["naive"] / ms["step"], "naive_over_ours": ms["naive"] / ms["ours"],
      "breakdown_ms": {"ours_grads": ms["ours_grads"], "ours_measures": ms["ours_measures"],
                       "backward_whole_batch": ms["backward"]},
      **agreement, "compile_s": compile_s, "raw_s": raw,
  }


def _print_table(rows: Sequence[dict[str, Any]]) -> None:
  print("| T | m | d | step ms | step in chunk ms | ours ms | naive ms | ours/step | naive/step "
        "| naive/ours | cos max diff |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['tasks']} | {r['block_size']} | {r['input_dim']} | {r['step_ms']:.3f} "
          f"| {r['step_in_chunk_ms']:.3f} | {r['ours_ms']:.3f} | {r['naive_ms']:.3f} "
          f"| {r['ours_over_step']:.2f}x | {r['naive_over_step']:.2f}x "
          f"| {r['naive_over_ours']:.2f}x | {r['cosine_max_abs_diff']:.1e} |")
  print()
  print("breakdown of ours (ms): T: per-task gradients / measures alone / one backward pass of "
        "the whole batch")
  for r in rows:
    b = r["breakdown_ms"]
    print(f"  T={r['tasks']}: {b['ours_grads']:.3f} / {b['ours_measures']:.3f} / "
          f"{b['backward_whole_batch']:.3f}")


GRID_TARGET = 1.5  # a study with the measurements on should take at most this x the wall time


def _study_wall(measure: bool, steps: int, workdir: Path) -> float:
  flag = str(measure)
  cmd = [sys.executable, "-m", "experiments.main", "--config=configs/interference.py",
         f"--workdir={workdir}", f"--config.train.steps={steps}",
         f"--config.measure.allocation={flag}", f"--config.measure.interference={flag}"]
  start = time.perf_counter()
  subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
  return time.perf_counter() - start


def bench_study(repeats: int, steps: int) -> dict[str, Any]:
  """Wall time of the interference study with its measurements on and off, in turn."""
  on, off = [], []
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(repeats):
      order = (True, False) if r % 2 == 0 else (False, True)
      for measure in order:
        wall = _study_wall(measure, steps, Path(tmp) / f"{r}_{measure}")
        (on if measure else off).append(wall)
        print(f"study run {r}, measurements {'on' if measure else 'off'}: {wall:.1f} s",
              flush=True)
  ratios = [a / b for a, b in zip(on, off)]
  return {"steps": steps, "wall_on_s": on, "wall_off_s": off,
          "median_on_s": statistics.median(on), "median_off_s": statistics.median(off),
          "median_ratio": statistics.median(ratios),
          "target_met": statistics.median(ratios) <= GRID_TARGET}


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5, help="timed measurements of each (median)")
  parser.add_argument("--calls", type=int, default=20, help="calls averaged per measurement")
  parser.add_argument("--tasks", type=timing.parse_ints, default=[16, 64], help="comma-separated T")
  parser.add_argument("--width", type=int, default=64, help="encoder width N")
  parser.add_argument("--batch_size", type=int, default=256, help="examples per step, in total")
  parser.add_argument("--input_dim", type=int, default=128,
                      help="d; the block size is m = input_dim // T")
  parser.add_argument("--train_steps", type=int, default=100,
                      help="steps trained before measuring (heads start at zero)")
  parser.add_argument("--grid_repeats", type=int, default=3,
                      help="study runs with measurements on and off (0: skip)")
  parser.add_argument("--grid_steps", type=int, default=1000,
                      help="train.steps of those runs (the evaluation interval stays 250)")
  parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
  args = parser.parse_args(argv)
  if args.repeats < 1 or args.calls < 1 or args.train_steps < 1:
    parser.error("--repeats, --calls and --train_steps must be at least 1")
  if not args.tasks or min(args.tasks) < 2 or max(args.tasks) > args.batch_size:
    parser.error("every T of --tasks must be in [2, batch_size]")
  return args


def _settings(args: argparse.Namespace) -> dict[str, Any]:
  return {
      "repeats": args.repeats, "calls_per_measurement": args.calls, "tasks": args.tasks,
      "width": args.width, "batch_size": args.batch_size, "input_dim": args.input_dim,
      "block_size": "m = input_dim // T", "activation": "identity", "num_rare": 1,
      "optimizer": "adam", "schedule": "constant", "learning_rate": LEARNING_RATE,
      "rare_frequency": RARE_FREQUENCY, "common_exponent": COMMON_EXPONENT, "beta": BETA,
      "train_steps_before": args.train_steps,
      "matmul_precision": ensemble.MATMUL_PRECISION,
      "timing": "median over repeats of the mean of `calls` calls dispatched back to back "
                "then block_until_ready'd; compiled and warmed up first; all timers in turn "
                "each repeat, order rotating. step_in_chunk: a train_chunk of `calls` steps "
                "divided by `calls`"}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the benchmark, prints its table and writes its JSON; returns the results."""
  args = _arguments(argv)
  device = jax.devices()[0]
  results: dict[str, Any] = {
      **timing.environment(device), "devices_used": 1, "settings": _settings(args),
      "target": f"ours <= {TARGET_RATIO}x step at T = {min(args.tasks)}",
      "by_tasks": {},
  }
  rows = []
  for num_tasks in args.tasks:
    r = bench_tasks(num_tasks, args)
    rows.append(r)
    results["by_tasks"][str(num_tasks)] = r
    print(f"T={num_tasks} (m={r['block_size']}, d={r['input_dim']}, {r['examples_per_task']} "
          f"examples per task): step {r['step_ms']:.3f} ms, ours {r['ours_ms']:.3f} ms "
          f"({r['ours_over_step']:.2f}x), naive {r['naive_ms']:.3f} ms "
          f"({r['naive_over_step']:.2f}x)", flush=True)
  first = rows[0]
  results["target_met"] = first["ours_over_step"] <= TARGET_RATIO
  print()
  print(f"{device.platform} ({device.device_kind}), jax {jax.__version__}; width "
        f"{args.width}, batch {args.batch_size}, m = {args.input_dim} // T, medians of "
        f"{args.repeats} x {args.calls} calls")
  _print_table(rows)
  print(f"target ours <= {TARGET_RATIO}x step at T={first['tasks']}: "
        f"{timing.met(results['target_met'])} ({first['ours_over_step']:.2f}x)")
  if args.grid_repeats > 0:
    study = bench_study(args.grid_repeats, args.grid_steps)
    results["study"] = study
    print(f"configs/interference.py, {args.grid_steps} steps: measurements on "
          f"{study['median_on_s']:.1f} s, off {study['median_off_s']:.1f} s, median ratio "
          f"{study['median_ratio']:.2f}x (target <= {GRID_TARGET}x: "
          f"{timing.met(study['target_met'])})")
  timing.write_json(args.out, results, final=True)
  return results


if __name__ == "__main__":
  main()
