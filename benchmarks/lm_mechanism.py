"""The cost of the injection study's mechanism measurements: whole runs of one config with
config.mechanism's measurements on and off, in turn, each in a fresh process and work directory.

  python -m benchmarks.lm_mechanism                      # the CPU default, shortened
  python -m benchmarks.lm_mechanism --preset=mechanism --steps=0 --repeats=1

By default the measurements that run at the default evaluation interval (every 400 steps): the
gradient decomposition (under the default's steady schedule, at every evaluation) and the
probes, on the default's design shortened to --steps steps and --sizes sizes with one seed, so
that a round is minutes. With --preset=mechanism, the bursts preset's own measurements (the
decomposition at every burst and halfway between, the task-loss trace after every update)
against the same preset with them off. Each run's wall time is the whole invocation
(compilation, training, evaluation, report); the medians over --repeats rounds, on and off
alternating first, and the median ratio. JSON in benchmarks/results/lm_mechanism.json.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from benchmarks import timing

RESULTS = timing.REPO / "benchmarks" / "results" / "lm_mechanism.json"
TARGET = 1.3  # measurements on at the default evaluation interval: at most this x the wall time
MEASUREMENTS = {"default": ("gradients", "probes"),
                "mechanism": ("gradients", "probes", "retention")}


def command(args: argparse.Namespace, on: bool, wd: Path) -> list[str]:
  """The experiments.main invocation of one run."""
  cmd = [sys.executable, "-m", "experiments.main",
         f"--config=configs/lm_size_by_frequency.py:{args.preset}", f"--workdir={wd}"]
  if args.steps:
    cmd += [f"--config.train.steps={args.steps}", "--config.grid.seed=(0,)",
            f"--config.grid.size=({','.join(repr(s) for s in args.sizes.split(','))},)"]
  cmd += [f"--config.mechanism.{m}={on}" for m in MEASUREMENTS[args.preset]]
  return cmd


def wall(cmd: list[str]) -> float:
  start = time.perf_counter()
  subprocess.run(cmd, cwd=timing.REPO, check=True, capture_output=True)
  return time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict[str, Any]:
  on, off = [], []
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(args.repeats):
      for flag in ((True, False) if r % 2 == 0 else (False, True)):
        seconds = wall(command(args, flag, Path(tmp) / f"{r}_{flag}"))
        (on if flag else off).append(seconds)
        print(f"round {r}, measurements {'on' if flag else 'off'}: {seconds:.1f} s", flush=True)
  ratio = statistics.median(a / b for a, b in zip(on, off))
  return {"preset": args.preset, "steps": args.steps or "the preset's",
          "sizes": args.sizes if args.steps else "the preset's",
          "measurements": list(MEASUREMENTS[args.preset]), "wall_on_s": on, "wall_off_s": off,
          "median_on_s": statistics.median(on), "median_off_s": statistics.median(off),
          "median_ratio": ratio,
          "target": TARGET if args.preset == "default" else None,
          "target_met": ratio <= TARGET if args.preset == "default" else None}


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="default", choices=sorted(MEASUREMENTS))
  parser.add_argument("--steps", type=int, default=2000,
                      help="train.steps of each run (0: the preset's own)")
  parser.add_argument("--sizes", default="cpu_d16_l2,cpu_d64",
                      help="grid.size of each run when --steps is set")
  parser.add_argument("--repeats", type=int, default=3, help="rounds of on and off (median)")
  parser.add_argument("--out", type=Path, default=RESULTS)
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  args = _arguments(argv)
  results = timing.environment(jax.devices()[0]) | measure(args)
  timing.write_json(args.out, results, final=True)
  print(f"mechanism measurements ({', '.join(results['measurements'])}) on, {args.preset}: "
        f"median {results['median_on_s']:.1f} s on, {results['median_off_s']:.1f} s off, "
        f"median ratio {results['median_ratio']:.2f}x"
        + (f" (target <= {TARGET}x: {timing.met(results['target_met'])})"
           if results["target"] else ""))
  return results


if __name__ == "__main__":
  main()
