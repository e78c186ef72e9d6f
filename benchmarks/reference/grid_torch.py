"""The grid trained the way one would write it in eager PyTorch: the yardstick of benchmarks.grid.

  python benchmarks/reference/grid_torch.py --widths 16,32,64,128 \
      --rare_frequencies 0.01,0.024,0.057 --seeds 0,1 --steps 2000 --batch_size 512 [--out PATH]

Needs only torch and numpy (no JAX, no rare_tasks), so it runs in any environment with torch;
benchmarks.grid runs it with the Python its `--torch_python` names. The same study as
configs/width_by_frequency.py on the grid above:
K = 16 linear-regression tasks of m = 8 features on the blocks of a random rotation of R^128,
spectra j^-1, common tasks at power-law frequencies (exponent 1.5) and one rare task; a linear
encoder of width N and one linear head per task (zero-initialised), the squared error of each
example's own head; Adam at 3e-3 with a cosine schedule to 1%; every 500 steps the per-task FVU
on 4,096 fresh samples with balanced tasks.

One model per cell, trained in turn, one eager step at a time: each step draws its batch with
vectorised torch ops (z ~ N(0, diag(lambda)), x = z Q^T, tasks by inverse CDF of one uniform per
example), runs forward, backward and torch.optim.Adam. That is the straightforward program a
researcher writes, not a strawman: no Python loop over examples or tasks. Its wall time, start-up
included, is what a grid invocation of rare_tasks is compared with.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

NUM_TASKS, BLOCK_SIZE, COMMON_EXPONENT, BETA = 16, 8, 1.5, 1.0
LEARNING_RATE, FINAL_LR_FRACTION = 3e-3, 0.01
EVAL_EVERY, EVAL_SAMPLES = 500, 4096


def mixture(rare_frequency: float) -> np.ndarray:
  """Task probabilities (K,): the last task rare, the others in proportion to (k+1)^-a."""
  weights = np.arange(1, NUM_TASKS, dtype=np.float64) ** (-COMMON_EXPONENT)
  return np.concatenate([weights / weights.sum() * (1 - rare_frequency), [rare_frequency]])


def basis(seed: int = 0) -> np.ndarray:
  """A Haar-random rotation Q of R^d, column k*m+j feature j of task k."""
  d = NUM_TASKS * BLOCK_SIZE
  q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
  return q * np.sign(np.diag(r))


def train_cell(width: int, rare_frequency: float, seed: int, steps: int, batch_size: int,
               q: torch.Tensor, sqrt_spectrum: torch.Tensor, spectrum_sum: torch.Tensor
               ) -> list[dict]:
  """Trains one cell; returns its evaluation records (step, per-task FVU)."""
  torch.manual_seed(seed)
  d, k, m = q.shape[0], NUM_TASKS, BLOCK_SIZE
  encoder = torch.nn.Linear(d, width, bias=False)
  heads = torch.nn.Linear(width, k * m, bias=False)
  torch.nn.init.zeros_(heads.weight)
  params = list(encoder.parameters()) + list(heads.parameters())
  optimizer = torch.optim.Adam(params, lr=LEARNING_RATE)
  schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: FINAL_LR_FRACTION + (
      1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
  cdf = torch.tensor(np.cumsum(mixture(rare_frequency)), dtype=torch.float32)
  eval_tasks = torch.arange(EVAL_SAMPLES) % k

  def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(n, d) * sqrt_spectrum
    return z @ q.T, z.view(n, k, m)

  def own_error(x, z, tasks):
    y = heads(encoder(x)).view(-1, k, m)
    rows = torch.arange(x.shape[0])
    return ((y[rows, tasks] - z[rows, tasks]) ** 2).sum(-1)

  records = []
  for step in range(1, steps + 1):
    x, z = draw(batch_size)
    tasks = torch.clamp(torch.searchsorted(cdf, torch.rand(batch_size), right=True), max=k - 1)
    loss = own_error(x, z, tasks).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()
    if step % EVAL_EVERY == 0 or step == steps:
      with torch.no_grad():
        x, z = draw(EVAL_SAMPLES)
        err = own_error(x, z, eval_tasks)
        mse = torch.zeros(k).index_add_(0, eval_tasks, err) / (EVAL_SAMPLES / k)
        records.append({"step": step, "fvu": (mse / spectrum_sum).tolist()})
  return records


def main(argv: list[str] | None = None) -> dict:
  start = time.perf_counter()
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
  parser.add_argument("--widths", type=ints, default=[16, 32, 64, 128])
  parser.add_argument("--rare_frequencies", type=lambda s: [float(v) for v in s.split(",")],
                      default=[1e-2, 2.4e-2, 5.7e-2])
  parser.add_argument("--seeds", type=ints, default=[0, 1])
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--batch_size", type=int, default=512)
  parser.add_argument("--out", type=Path, default=None, help="JSON of the final FVUs and times")
  args = parser.parse_args(argv)
  q = torch.tensor(basis(), dtype=torch.float32)
  spectrum = np.arange(1, BLOCK_SIZE + 1, dtype=np.float64) ** -BETA
  sqrt_spectrum = torch.tensor(np.tile(np.sqrt(spectrum), NUM_TASKS), dtype=torch.float32)
  spectrum_sum = torch.full((NUM_TASKS,), float(spectrum.sum()))
  cells = []
  for width in args.widths:
    for f in args.rare_frequencies:
      for seed in args.seeds:
        records = train_cell(width, f, seed, args.steps, args.batch_size, q, sqrt_spectrum,
                             spectrum_sum)
        cells.append({"width": width, "rare_frequency": f, "seed": seed,
                      "final_fvu": records[-1]["fvu"]})
        print(f"width {width}, f {f}, seed {seed}: rare FVU {records[-1]['fvu'][-1]:.3f}",
              flush=True)
  result = {"torch_version": torch.__version__, "threads": torch.get_num_threads(),
            "cells": cells, "wall_s": time.perf_counter() - start}
  if args.out is not None:
    args.out.write_text(json.dumps(result, indent=2) + "\n")
  print(f"wall {result['wall_s']:.1f} s for {len(cells)} cells of {args.steps} steps")
  return result


if __name__ == "__main__":
  sys.exit(0 if main() else 1)
