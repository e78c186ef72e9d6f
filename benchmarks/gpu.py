"""One prepared GPU benchmark (under 5 minutes on one H100): language-model training speed against
the chip's peak, an ensemble against its models one by one, and the synthetic grid's widest group
against a matmul.

  python -m benchmarks.gpu                     # GPU: the sizes below -> benchmarks/results/gpu.json
  python -m benchmarks.gpu --smoke             # CPU: every size tiny, well under a minute
  python -m benchmarks.gpu --peak_tflops 756   # another chip's peak (here the H100 PCIe's)

1. lm: tokens/s and model FLOPs utilisation (MFU) of the 4M, 20M and 60M presets at rows of
   2,048 tokens in bfloat16 (batches 8, 6 and 4 rows). MFU = tokens/s x FLOPs per token / the
   chip's dense bfloat16 peak (PEAK_FLOPS, 989 TFLOP/s for the H100 SXM; --peak_tflops for
   another), FLOPs per token = 6 N_nonemb + 6 d V + 12 L d T (rare_tasks.lm.ladder, as
   benchmarks.lm counts them).
2. ensemble: 8 members of the 4M preset trained as one vmapped ensemble against the same 8 models
   (the same seeds) trained one after another for the same steps on the same rows (2 rows of
   2,048 each, the 4,096 tokens per member step of configs/lm_gpu.py): model-tokens/s of each and
   their ratio (ensemble over one after another).
3. synthetic: the widest group of configs/width_by_frequency.py's default grid (width 128, 12
   cells) as one ensemble on one device, as benchmarks.grid trains it (1,000 steps a chunk), its
   model FLOP/s (benchmarks.grid's formula) as a fraction of a float32 8,192^3 matmul timed beside
   it at the ensemble's precision ("highest"); the fraction of the same matmul at the default
   precision (TF32 where the GPU has it) is given too.

Every timer trains a chunk of steps exactly as the trainers do (the LM's rows drawn at random on
the device, then one scanned dispatch), compiled and warmed up first; the timers of a section run
interleaved, `--repeats` times, and the medians are compared. A batch the device runs out of
memory for is halved until it fits (the JSON gives the batch asked for and the one run). Every
size is a flag; `--smoke` shrinks them all (cpu_d32, rows of 32, the grid's smoke preset), and
sizes given beside it still win.

Needs ml-collections: the synthetic track's config and task packages (and so benchmarks.grid and
benchmarks.timing) import it. It is one pure-Python wheel (with absl-py and PyYAML, which jax's
stack brings): where it is missing, `pip install ml-collections`, or offline its wheel fetched
elsewhere with `pip download --no-deps ml-collections` and installed with `pip install --no-deps`.
Nothing here imports grain, tensorflow-datasets or array-record.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

try:
  from benchmarks import grid, timing
except ModuleNotFoundError as missing:
  if missing.name != "ml_collections":
    raise
  sys.exit("benchmarks.gpu: needs ml-collections (pure Python, with absl-py and PyYAML): "
           "pip install ml-collections")
from rare_tasks.lm import ladder, sharding
from rare_tasks.lm.model import DTYPES, Model, ModelSpec
from rare_tasks.lm.trainer import Trainer, TrainSpec
from rare_tasks.synthetic import ensemble, training
from rare_tasks.synthetic.grid import expand, group_cells
from rare_tasks.synthetic.models import model_of
from rare_tasks.synthetic.tasks import task_of

PEAK_FLOPS = 989e12
PEAK_NAME = "NVIDIA H100 SXM, dense bfloat16 (989 TFLOP/s; 1,979 with 2:4 sparsity)"
FLOPS_FORMULA = ("training FLOPs per token = 6 N_nonemb + 6 d V + 12 L d T "
                 "(rare_tasks.lm.ladder.flops_per_token): N_nonemb the parameters outside the "
                 "input embedding and the LM head, 6 d V the LM head, 12 L d T the attention "
                 "scores and their weighted sum for every query-key pair (causal not halved); "
                 "forward and backward, the input embedding's lookup not counted")
BATCH_NOTE = ("default batches chosen without a GPU run, from XLA's buffer assignment of each "
              "training step compiled on the CPU at rows of 2,048 in bfloat16 (per row 3.4 GiB "
              "at 4M, 6.4 at 20M, 9.9 at 60M, mostly the XLA attention's float32 scores kept "
              "for the backward pass): 4M x 8 rows 27 GiB, 20M x 6 38 GiB, 60M x 4 40 GiB, the "
              "8-member 4M ensemble x 2 rows 49 GiB, against the 75% of an 80 GB H100 that JAX "
              "allocates (about 59 GiB); a batch that does not fit is halved")
SECTIONS = ("lm", "ensemble", "synthetic")
SYNTHETIC_PRESETS = ("default", "smoke")
RESULTS = timing.REPO / "benchmarks" / "results"
# Sizes of --smoke: flags given beside it win.
SMOKE = {"presets": "cpu_d32", "batch_sizes": "2", "seq_len": 32, "vocab": 256, "steps": 2,
         "repeats": 3, "ensemble_preset": "cpu_d32", "ensemble_batch": 2,
         "synthetic_preset": "smoke", "synthetic_steps": 20, "matmul": 256}
T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
  def error(self, message: str) -> NoReturn:
    self.exit(2, f"benchmarks.gpu: error: {message}\n")


def _random_rows(step: jax.Array, shape: tuple[int, ...], vocab: int) -> jax.Array:
  """Rows of uniformly random tokens for the updates after `step` (as good as text for speed)."""
  key = jax.random.fold_in(jax.random.key(0), step)
  return jax.random.randint(key, shape, 0, vocab, dtype=jnp.int32)


@functools.cache
def _trainer(spec: ModelSpec, members: int) -> Trainer:
  """One trainer per shape on the first device: its compiled chunks serve every timer of it (the
  models one after another reuse the lm section's program when their batches match)."""
  mesh = sharding.make_mesh(jax.devices()[:1], 1, 1)
  return Trainer(Model(spec), TrainSpec(steps=10**6, learning_rate=1e-3), members, mesh)


class LMTimer:
  """`copies` ensembles of `members` decoders of one preset, compiled and warmed up; `run` trains
  each copy one chunk of `steps` steps in turn and returns the seconds of all of them.

  Copy c's members have the seeds c * members .. (c + 1) * members - 1, so 8 copies of 1 member
  are the same models as 1 copy of 8.
  """

  def __init__(self, preset: str, members: int, batch: int, args: argparse.Namespace,
               copies: int = 1):
    self.spec = ModelSpec(ladder.PRESETS[preset].shape, args.vocab, dtype=args.dtype,
                          attention=args.attention)
    self.trainer = _trainer(self.spec, members)
    mesh = self.trainer.mesh
    shape = (args.steps, batch, args.seq_len + 1)
    self._rows = jax.jit(functools.partial(_random_rows, shape=shape, vocab=args.vocab),
                         out_shardings=sharding.batch_sharding(mesh, leading=1))
    self.states = [self.trainer.init(np.arange(members) + c * members) for c in range(copies)]
    self.steps, self.step = args.steps, 0
    self.tokens = args.steps * batch * args.seq_len * members * copies  # per run, all models
    start = time.perf_counter()
    self.run()
    self.first_run_s = time.perf_counter() - start  # compile and warm up

  def run(self) -> float:
    start = time.perf_counter()
    for i, state in enumerate(self.states):
      self.states[i] = None  # donated
      state, parts = self.trainer.chunk(state, self._rows(self.step), first_step=self.step)
      jax.block_until_ready((state, parts))
      self.states[i] = state
    self.step += self.steps
    return time.perf_counter() - start


def fitted(build: Callable[[int], T], batch: int) -> tuple[T, int]:
  """(build(batch), batch), the batch halved while the device runs out of memory (to 1)."""
  while True:
    try:
      return build(batch), batch
    except jax.errors.JaxRuntimeError as error:
      if "RESOURCE_EXHAUSTED" not in str(error) or batch == 1:
        raise
      print(f"out of memory at batch {batch}; trying {batch // 2}", flush=True)
      batch //= 2
      gc.collect()


def parameter_counts(spec: ModelSpec) -> dict[str, int]:
  """The ladder's counts of a decoder and the count of its initialised parameters' shapes."""
  abstract = jax.eval_shape(Model(spec).init, jax.random.key(0))
  return {"non_embedding": ladder.non_embedding_params(spec.shape, spec.block),
          "total": ladder.total_params(spec.shape, spec.vocab_size, spec.block,
                                       spec.tie_embeddings),
          "initialised_total": int(sum(a.size for a in jax.tree.leaves(abstract)))}


def _preset_result(preset: str, t: LMTimer, batch: int, asked: int, raw: list[float],
                   args: argparse.Namespace) -> dict[str, Any]:
  fpt = ladder.flops_per_token(t.spec.shape, args.vocab, args.seq_len, t.spec.block)
  s = statistics.median(raw)
  tokens_per_s = t.tokens / s
  return {"preset": preset, "shape": dataclasses.asdict(t.spec.shape),
          "parameters": parameter_counts(t.spec), "batch_requested": asked, "batch": batch,
          "seq_len": args.seq_len, "steps": args.steps, "tokens_per_run": t.tokens,
          "flops_per_token": fpt, "first_run_s": t.first_run_s, "median_s": s, "raw_s": raw,
          "tokens_per_s": tokens_per_s, "achieved_flop_per_s": tokens_per_s * fpt,
          "mfu": tokens_per_s * fpt / args.peak_flops}


def lm_section(args: argparse.Namespace) -> dict[str, Any]:
  """Tokens/s and MFU of each preset, their timers interleaved."""
  built = {}
  for preset, asked in zip(args.presets, args.batch_sizes):
    print(f"lm: compiling {preset} at batch {asked} x {args.seq_len} ...", flush=True)
    built[preset] = (*fitted(lambda b, p=preset: LMTimer(p, 1, b, args), asked), asked)
  raw = timing.interleaved({p: t.run for p, (t, _, _) in built.items()}, args.repeats)
  out = {p: _preset_result(p, t, b, asked, raw[p], args) for p, (t, b, asked) in built.items()}
  for p, r in out.items():
    print(f"lm {p:>8}: batch {r['batch']} x {r['seq_len']}: {r['tokens_per_s']:>12,.0f} "
          f"tokens/s, {r['achieved_flop_per_s'] / 1e12:.3g} TFLOP/s, MFU {100 * r['mfu']:.3g}%")
  return out


def ensemble_section(args: argparse.Namespace) -> dict[str, Any]:
  """One vmapped ensemble of `members` models against the same models one after another."""
  p, m = args.ensemble_preset, args.members
  print(f"ensemble: compiling {p} x{m} and {p} x1 ...", flush=True)
  ens, batch = fitted(lambda b: LMTimer(p, m, b, args), args.ensemble_batch)
  one_by_one = LMTimer(p, 1, batch, args, copies=m)
  raw = timing.interleaved({"ensemble": ens.run, "one_after_another": one_by_one.run},
                           args.repeats)
  fpt = ladder.flops_per_token(ens.spec.shape, args.vocab, args.seq_len, ens.spec.block)
  out: dict[str, Any] = {
      "preset": p, "members": m, "batch_requested": args.ensemble_batch, "batch": batch,
      "seq_len": args.seq_len, "steps": args.steps, "flops_per_token": fpt}
  for name, t in (("ensemble", ens), ("one_after_another", one_by_one)):
    s = statistics.median(raw[name])
    out[name] = {"model_tokens_per_run": t.tokens, "first_run_s": t.first_run_s,
                 "median_s": s, "raw_s": raw[name], "model_tokens_per_s": t.tokens / s,
                 "mfu": t.tokens / s * fpt / args.peak_flops}
  out["ratio_ensemble_over_one_after_another"] = (
      out["ensemble"]["model_tokens_per_s"] / out["one_after_another"]["model_tokens_per_s"])
  print(f"ensemble {p} x{m}: {out['ensemble']['model_tokens_per_s']:,.0f} model-tokens/s; one "
        f"after another {out['one_after_another']['model_tokens_per_s']:,.0f}; ratio "
        f"{out['ratio_ensemble_over_one_after_another']:.2f}x")
  return out


def _matmul(raw: list[float], n: int, precision: str, compile_s: float) -> dict[str, Any]:
  s = statistics.median(raw)
  return {"shape": [n, n, n], "dtype": "float32", "precision": precision, "flops": 2 * n ** 3,
          "compile_s": compile_s, "median_s": s, "raw_s": raw, "flop_per_s": 2 * n ** 3 / s}


def synthetic_section(args: argparse.Namespace) -> dict[str, Any]:
  """The grid's widest group as one ensemble on one device against float32 matmuls."""
  device = jax.devices()[0]
  config = timing.load_config(grid.CONFIG_FILE, args.synthetic_preset)
  task = task_of(config)
  widest = max(group_cells(expand(config, task)), key=lambda g: g.static["width"])
  print(f"synthetic: compiling the width {widest.static['width']} group ...", flush=True)
  spec = ensemble.EnsembleSpec(model_of(config.model.name, widest.static, task), task,
                               training.train_spec_of(config))
  group = grid._Trainer(spec, [widest.cells], task, args.synthetic_steps, device)
  precise = ensemble.MATMUL_PRECISION
  with jax.default_matmul_precision(precise):
    matmul, compile_s = timing.matmul_timer(device, args.matmul)
  default, default_compile_s = timing.matmul_timer(device, args.matmul)
  raw = timing.interleaved({"ensemble": lambda: group.run_all()[0], "matmul": matmul,
                            "matmul_default": default}, args.repeats)
  cells = len(widest.flat_cells())
  b, d, w = config.train.batch_size, task.input_dim, widest.static["width"]
  outputs = task.num_tasks * task.block_size
  per_member = grid.model_flops_per_member_step(b, d, w, outputs)
  s = statistics.median(raw["ensemble"])
  achieved = per_member * cells * args.synthetic_steps / s
  mm = _matmul(raw["matmul"], args.matmul, precise, compile_s)
  mm_default = _matmul(raw["matmul_default"], args.matmul, "default", default_compile_s)
  out = {"config": f"{grid.CONFIG_FILE}:{args.synthetic_preset}", "group": widest.name,
         "width": w, "cells": cells, "streams": widest.num_streams,
         "members": widest.num_members, "batch_size": b, "input_dim": d, "outputs": outputs,
         "steps": args.synthetic_steps, "formula": grid.FLOP_FORMULA,
         "flops_per_member_step": per_member, "compile_s": group.compile_s,
         "first_run_s": group.warmup_s, "median_s": s, "raw_s": raw["ensemble"],
         "model_steps_per_s": cells * args.synthetic_steps / s, "achieved_flop_per_s": achieved,
         "matmul": mm, "matmul_default_precision": mm_default,
         "fraction_of_matmul": achieved / mm["flop_per_s"],
         "fraction_of_default_precision_matmul": achieved / mm_default["flop_per_s"],
         "computed_flops_per_member_step": grid.computed_flops_per_member_step(
             b, d, w, task.block_size)}
  out["computed_fraction_of_matmul"] = (out["computed_flops_per_member_step"] * cells
                                        * args.synthetic_steps / s / mm["flop_per_s"])
  print(f"synthetic width {w} ({cells} cells): {achieved / 1e9:.3g} GFLOP/s, "
        f"{out['fraction_of_matmul']:.3f} of a {args.matmul}^3 float32 matmul at {precise} "
        f"({mm['flop_per_s'] / 1e12:.3g} TFLOP/s), "
        f"{out['fraction_of_default_precision_matmul']:.3f} of one at the default precision")
  return out


def _ints(text: str) -> list[int]:
  try:
    values = timing.parse_ints(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
  if not values or min(values) < 1:
    raise argparse.ArgumentTypeError(f"needs positive integers: {text!r}")
  return values


def _names(text: str) -> list[str]:
  return [x.strip() for x in text.split(",") if x.strip()]


def _parser() -> _Parser:
  p = _Parser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
  p.add_argument("--smoke", action="store_true", help="every size tiny (CPU, under a minute)")
  p.add_argument("--sections", type=_names, default=list(SECTIONS), help="of lm,ensemble,synthetic")
  p.add_argument("--presets", type=_names, default=["4M", "20M", "60M"], help="lm presets")
  p.add_argument("--batch_sizes", type=_ints, default=[8, 6, 4],
                 help="rows per step of each preset (one value: all of them)")
  p.add_argument("--seq_len", type=int, default=2048, help="tokens per row")
  p.add_argument("--vocab", type=int, default=ladder.NAMING_VOCAB)
  p.add_argument("--steps", type=int, default=10, help="LM steps per timed chunk")
  p.add_argument("--repeats", type=int, default=5, help="timed runs of each timer (median)")
  p.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
  p.add_argument("--attention", choices=("auto", "xla", "cudnn"), default="auto")
  p.add_argument("--peak_tflops", type=float, default=PEAK_FLOPS / 1e12,
                 help="the chip's dense bfloat16 peak (default: the H100 SXM's)")
  p.add_argument("--ensemble_preset", default="4M")
  p.add_argument("--members", type=int, default=8)
  p.add_argument("--ensemble_batch", type=int, default=2, help="rows per step, shared by members")
  p.add_argument("--synthetic_preset", default="default", help="of configs/width_by_frequency.py")
  p.add_argument("--synthetic_steps", type=int, default=1000, help="steps per timed chunk")
  p.add_argument("--matmul", type=int, default=8192, help="size of the float32 matmul")
  p.add_argument("--out", type=Path, default=None,
                 help="JSON (default benchmarks/results/gpu.json; gpu_smoke.json with --smoke)")
  return p


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
  """The flags, --smoke's sizes where no flag gives one; a mistake exits with one line."""
  p = _parser()
  if p.parse_known_args(argv)[0].smoke:
    p.set_defaults(**SMOKE)  # strings, converted by each flag's type like a flag's value
  args = p.parse_args(argv)
  _check(p, args)
  args.peak_flops = args.peak_tflops * 1e12
  args.peak_name = PEAK_NAME if args.peak_flops == PEAK_FLOPS else "given by --peak_tflops"
  if len(args.batch_sizes) == 1:
    args.batch_sizes = args.batch_sizes * len(args.presets)
  if args.out is None:
    args.out = RESULTS / ("gpu_smoke.json" if args.smoke else "gpu.json")
  return args


def _check(p: _Parser, args: argparse.Namespace) -> None:
  for name in ("seq_len", "vocab", "steps", "repeats", "members", "ensemble_batch",
               "synthetic_steps", "matmul"):
    if getattr(args, name) < 1:
      p.error(f"--{name} must be at least 1, not {getattr(args, name)}")
  if args.vocab < 2:
    p.error("--vocab must be at least 2")
  if not args.peak_tflops > 0:
    p.error(f"--peak_tflops must be positive, not {args.peak_tflops}")
  unknown = [x for x in [*args.presets, args.ensemble_preset] if x not in ladder.PRESETS]
  if unknown:
    p.error(f"unknown preset {unknown[0]!r}; one of {', '.join(ladder.PRESETS)}")
  if not args.presets or len(set(args.presets)) < len(args.presets):
    p.error(f"--presets: one or more distinct presets, not {','.join(args.presets)!r}")
  if len(args.batch_sizes) not in (1, len(args.presets)):
    p.error(f"--batch_sizes gives {len(args.batch_sizes)} values for {len(args.presets)} "
            "presets (give one, or one per preset)")
  if not args.sections or set(args.sections) - set(SECTIONS):
    p.error(f"--sections: of {', '.join(SECTIONS)}, not {','.join(args.sections)!r}")
  if args.synthetic_preset not in SYNTHETIC_PRESETS:
    p.error(f"--synthetic_preset: one of {', '.join(SYNTHETIC_PRESETS)}, not "
            f"{args.synthetic_preset!r}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the sections asked for and writes their JSON; returns it."""
  args = arguments(argv)
  device = jax.devices()[0]
  if device.platform == "cpu" and not args.smoke:
    _parser().error("no accelerator: the GPU sizes would take hours here; pass --smoke")
  settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
              if k not in ("peak_flops", "peak_name")}
  results: dict[str, Any] = {
      **timing.environment(device), "settings": settings,
      "batch_note": BATCH_NOTE, "peak": {"name": args.peak_name, "flop_per_s": args.peak_flops},
      "flops_formula": FLOPS_FORMULA,
      "mfu_formula": "tokens_per_s * flops_per_token / peak flop_per_s",
      "timing": "each timer compiled and run once first; a section's timers then run in "
                "turn, their order rotating, `repeats` times; medians compared",
      "device_memory": {}}
  sections = {"lm": lm_section, "ensemble": ensemble_section, "synthetic": synthetic_section}
  failed = []
  for name in args.sections:
    try:
      results[name] = sections[name](args)
    except Exception:  # one section failing (say, out of memory) keeps the others' figures
      failed.append(name)
      results[name] = {"error": traceback.format_exc()[-4000:]}
      print(f"{name}: FAILED\n{results[name]['error']}", file=sys.stderr, flush=True)
    results["device_memory"][name] = _memory(device)  # the peak so far, after the section
    gc.collect()
    timing.write_json(args.out, results)
  timing.write_json(args.out, results, final=True)
  if failed:
    raise SystemExit(f"benchmarks.gpu: failed: {', '.join(failed)} (tracebacks in {args.out})")
  return results


def _memory(device: jax.Device) -> dict[str, int] | None:
  """The device's allocator limit and peak use so far (None where it does not say: CPU)."""
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if not stats:
    return None
  return {k: stats[k] for k in ("bytes_limit", "peak_bytes_in_use") if k in stats}


if __name__ == "__main__":
  main()
