"""Language-model training speed: tokens/s and model FLOPs utilisation against a float32 matmul
measured in the same run, single models and an ensemble against the same models one by one.

  python -m benchmarks.lm            # CPU: cpu_d32 and cpu_d128, 2 layers, rows of 64, batch 32
  python -m benchmarks.lm --gpu      # GPU: the 4M and 20M presets in bfloat16

Then the share of a training step spent waiting for real text from the dataset cache
(benchmarks.lm_reader: cpu_d128 on the CPU, --reader_preset to choose; --no_reader to skip).

Every timer trains a chunk of steps exactly as the trainer does (batches generated on the device,
then one scanned dispatch), compiled and warmed up first; timers are interleaved and repeated,
and the medians are compared. Utilisation = (training FLOPs per token, 6 N_nonemb + 6 d V +
12 L d T, times tokens) / time / the matmul's FLOP/s. On CPU, JAX has one device per core (as
`experiments.main` sets up): "1 device" runs on one of them, "all devices" splits the batch (a
single model) or the members (an ensemble) over all of them. JSON in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from benchmarks import lm_reader, timing
from rare_tasks.core import mesh as core_mesh
from rare_tasks.lm import ladder, sharding
from rare_tasks.lm.data.markov import MAX_SYMBOLS, MarkovSource
from rare_tasks.lm.model import Model, ModelSpec
from rare_tasks.lm.trainer import Trainer, TrainSpec

RESULTS = timing.REPO / "benchmarks" / "results"


@dataclasses.dataclass(frozen=True)
class Case:
  preset: str
  members: int
  devices: int  # 1, or 0 for all local devices
  dtype: str = "float32"

  @property
  def name(self) -> str:
    where = "1 device" if self.devices == 1 else "all devices"
    return f"{self.preset} x{self.members} ({where}, {self.dtype})"


class Timed:
  """One case compiled and warmed up; `run` times one chunk of `steps` steps."""

  def __init__(self, case: Case, args: argparse.Namespace):
    devices = jax.devices()[: case.devices] if case.devices else jax.devices()
    shape = ladder.PRESETS[case.preset].shape
    if args.layers:
      shape = dataclasses.replace(shape, num_layers=args.layers)
    spec = ModelSpec(shape, args.vocab, dtype=case.dtype)
    members = sharding.member_axis_size(case.members, len(devices), 1)
    mesh = sharding.make_mesh(devices, members, 1)
    self.trainer = Trainer(Model(spec), TrainSpec(steps=10**6, learning_rate=1e-3), case.members,
                           mesh)
    self.source = MarkovSource(vocab_size=args.vocab, seq_len=args.seq_len, num_states=256,
                               num_symbols=min(args.vocab - 1, MAX_SYMBOLS))
    self.batches = sharding.batch_sharding(mesh, leading=1)
    self.state = self.trainer.init(np.arange(case.members))
    self.steps, self.batch, self.step = args.steps, args.batch, 0
    self.tokens = args.steps * args.batch * args.seq_len * case.members
    self.flops = ladder.flops_per_token(shape, args.vocab, args.seq_len) * self.tokens
    self.run()  # compile and warm up

  def run(self) -> float:
    start = time.perf_counter()
    b = self.source.train_batches(self.step, self.steps, self.batch, self.batches)
    self.state, parts = self.trainer.chunk(self.state, b)
    jax.block_until_ready((self.state, parts))
    self.step += self.steps
    return time.perf_counter() - start


def measure(cases: Sequence[Case], args: argparse.Namespace) -> dict[str, Any]:
  timed = {c.name: Timed(c, args) for c in cases}
  matmul, _ = timing.matmul_timer(jax.devices()[0], args.matmul, cases[0].dtype)
  matmul_flops = 2.0 * args.matmul ** 3
  timers = {name: t.run for name, t in timed.items()} | {"matmul": matmul}
  raw = timing.interleaved(timers, args.repeats)
  matmul_rate = matmul_flops / statistics.median(raw["matmul"])
  out: dict[str, Any] = {"matmul_flop_per_s": matmul_rate, "matmul_size": args.matmul,
                         "cases": {}}
  for c in cases:
    t, s = timed[c.name], statistics.median(raw[c.name])
    out["cases"][c.name] = {
        **dataclasses.asdict(c), "median_s": s, "raw_s": raw[c.name],
        "model_tokens_per_s": t.tokens / s, "tokens_per_s": t.tokens / s / c.members,
        "achieved_flop_per_s": t.flops / s, "utilisation": t.flops / s / matmul_rate}
  return out


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--gpu", action="store_true", help="the GPU cases (4M and 20M, bfloat16)")
  p.add_argument("--steps", type=int, default=10, help="steps per timed chunk")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--seq_len", type=int, default=64)
  p.add_argument("--vocab", type=int, default=512)
  p.add_argument("--layers", type=int, default=2, help="layers (0: the preset's)")
  p.add_argument("--matmul", type=int, default=2048, help="size of the reference matmul")
  p.add_argument("--no_reader", action="store_true", help="skip the real-text reader timers")
  lm_reader.arguments(p)
  return p.parse_args(argv)


def cpu_cases() -> list[Case]:
  return ([Case(p, 1, d) for p in ("cpu_d32", "cpu_d128") for d in (1, 0)]
          + [Case("cpu_d32", 8, 0), Case("cpu_d32", 8, 1)])


def gpu_cases() -> list[Case]:
  return [Case("4M", 1, 1, "bfloat16"), Case("20M", 1, 1, "bfloat16"),
          Case("4M", 8, 1, "bfloat16")]


def ratios(r: dict[str, Any], single: str, ensemble: str) -> dict[str, float]:
  """The ensemble's model-tokens/s over the best single model's (8 runs one after another)."""
  singles = [v for v in r["cases"].values() if v["preset"] == single and v["members"] == 1]
  best = max(s["model_tokens_per_s"] for s in singles)
  ens = max(v["model_tokens_per_s"] for v in r["cases"].values()
            if v["preset"] == ensemble and v["members"] > 1)
  return {f"{ensemble}_ensemble_over_sequential": ens / best}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  args = _arguments(argv)
  if not args.gpu:
    core_mesh.use_cpu_cores()  # before any JAX computation, as experiments.main does
  if args.gpu:
    args.seq_len, args.vocab, args.layers, args.matmul = 2048, 50_304, 0, 8192
    args.preset = "4M" if args.preset == "cpu_d128" else args.preset  # the reader's model
  device = jax.devices()[0]
  cases = gpu_cases() if args.gpu else cpu_cases()
  r = measure(cases, args)
  r["ratios"] = ratios(r, "4M" if args.gpu else "cpu_d32", "4M" if args.gpu else "cpu_d32")
  if not args.no_reader:
    r["reader"] = lm_reader.measure(args)
  r = {**timing.environment(device), "settings": vars(args), **r}
  print(f"matmul {args.matmul}^3 {cases[0].dtype}: {r['matmul_flop_per_s'] / 1e9:.1f} GFLOP/s")
  for name, v in r["cases"].items():
    print(f"{name:<40} {v['tokens_per_s']:>12,.0f} tokens/s {v['model_tokens_per_s']:>12,.0f} "
          f"model-tokens/s  utilisation {v['utilisation']:.1%}")
  for k, v in r["ratios"].items():
    print(f"{k}: {v:.2f}x")
  if "reader" in r:
    lm_reader.report(r["reader"])
  RESULTS.mkdir(parents=True, exist_ok=True)
  path = RESULTS / f"lm_{'gpu' if args.gpu else 'cpu'}.json"
  path.write_text(json.dumps(r, indent=2) + "\n")
  print(f"wrote {path}")
  return r


if __name__ == "__main__":
  main()
