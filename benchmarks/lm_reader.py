"""Does reading real text keep the trainer fed? The share of a training step's time spent
waiting for rows from the dataset cache, for one cpu_d128 (or --preset) model.

  python -m benchmarks.lm_reader          # also run by python -m benchmarks.lm

Two timers, interleaved and repeated, train the same chunks of steps on the same mesh as the
pretraining loop does (each chunk dispatched without waiting for the one before):
  "from memory": every chunk's batches read from the cache beforehand, already on the devices;
  "from the cache": each chunk's batches read (grain's shuffle, one batched array_record read)
  and placed just before it is dispatched, while the previous chunk trains.
The machine's noise (+-15% between repeats here) swamps the difference of medians, so each
repeat runs both timers back to back (their order alternating) and waiting = 1 - 1 / the median
over repeats of (from the cache / from memory). The rows are the Python standard
library's (data.corpus = "python_stdlib", a BPE of --vocab tokens, rows of --seq_len), built
into the user's cache the first time. Also reported: the host time of one chunk's read alone,
as a share of that chunk's training time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from benchmarks import timing
from rare_tasks.core import mesh as core_mesh
from rare_tasks.lm import config as lm_config
from rare_tasks.lm import data, ladder, sharding
from rare_tasks.lm.model import Model, ModelSpec
from rare_tasks.lm.trainer import Trainer, TrainSpec


class Fed:
  """A compiled single model and its text source; the two ways of feeding it."""

  def __init__(self, args: argparse.Namespace):
    c = lm_config.base_config()
    c.data.update(dict(corpus="python_stdlib", vocab_size=args.vocab, seq_len=args.seq_len))
    c.train.batch_size = args.batch
    self.source = data.source_of(c)
    shape = ladder.PRESETS[args.preset].shape
    if args.layers:
      shape = ladder.Shape(shape.d_model, args.layers, shape.num_heads, shape.mlp_hidden)
    devices = jax.devices()
    mesh = sharding.make_mesh(devices, 1, 1)
    spec = ModelSpec(shape, self.source.vocab_size)
    self.trainer = Trainer(Model(spec), TrainSpec(steps=10**6, learning_rate=1e-3), 1, mesh)
    self.sharding = sharding.batch_sharding(mesh, leading=1)
    self.state = self.trainer.init(np.zeros(1))
    self.steps, self.chunks, self.batch = args.steps, args.chunks, args.batch
    self.first = 0
    self.memory = [self.read(k) for k in range(self.chunks)]
    self.from_memory()  # compile and warm up

  def read(self, k: int) -> jax.Array:
    return self.source.train_batches(self.first + k * self.steps, self.steps, self.batch,
                                     self.sharding)

  def _train(self, batches_of) -> float:
    start = time.perf_counter()
    parts = None
    for k in range(self.chunks):
      self.state, parts = self.trainer.chunk(self.state, batches_of(k))
    jax.block_until_ready((self.state, parts))
    return time.perf_counter() - start

  def from_memory(self) -> float:
    return self._train(lambda k: self.memory[k])

  def from_cache(self) -> float:
    self.first += self.chunks * self.steps  # rows not read before
    return self._train(self.read)

  def read_alone(self) -> float:
    start = time.perf_counter()
    jax.block_until_ready(self.read(0))
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict[str, Any]:
  """The timers' medians and the share of the time spent waiting for data."""
  fed = Fed(args)
  raw = timing.interleaved({"from_memory": fed.from_memory, "from_cache": fed.from_cache,
                            "read_alone": fed.read_alone}, args.repeats)
  med = {k: statistics.median(v) for k, v in raw.items()}
  paired = [c / m for c, m in zip(raw["from_cache"], raw["from_memory"])]
  chunk_s = med["from_memory"] / args.chunks
  return {"preset": args.preset, "steps_per_chunk": args.steps, "chunks": args.chunks,
          "batch": args.batch, "seq_len": args.seq_len, "vocab": fed.source.vocab_size,
          "raw_s": raw, "median_s": med, "step_s": chunk_s / args.steps,
          "paired_ratios": paired, "waiting_share": 1 - 1 / statistics.median(paired),
          "read_over_train": med["read_alone"] / chunk_s,
          "source": {k: fed.source.describe()[k] for k in ("train_rows", "cache", "tokenizer")}}


def arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--reader_preset", dest="preset", default="cpu_d128")
  p.add_argument("--reader_chunks", dest="chunks", type=int, default=4,
                 help="chunks per reader timer")


def report(r: dict[str, Any]) -> None:
  print(f"reader, {r['preset']} (step {r['step_s'] * 1e3:.1f} ms): waiting for data "
        f"{r['waiting_share']:.1%} of the time; one chunk's read alone "
        f"{r['read_over_train']:.1%} of its training")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--steps", type=int, default=10, help="steps per chunk")
  p.add_argument("--repeats", type=int, default=12)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--seq_len", type=int, default=64)
  p.add_argument("--vocab", type=int, default=512)
  p.add_argument("--layers", type=int, default=2, help="layers (0: the preset's)")
  arguments(p)
  args = p.parse_args(argv)
  core_mesh.use_cpu_cores()
  r = {**timing.environment(jax.devices()[0]), "settings": vars(args), **measure(args)}
  report(r)
  path = timing.REPO / "benchmarks" / "results" / "lm_reader_cpu.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(r, indent=2) + "\n")
  print(f"wrote {path}")
  return r


if __name__ == "__main__":
  main()
