"""The language models' mixture design against a grid of the same sizes, seeds and steps: does
the search find each size's threshold inside the grid's range, and how many models does each
train?

  python -m benchmarks.lm_mixture_design_vs_grid            # the CPU default: about 30 minutes
  python -m benchmarks.lm_mixture_design_vs_grid --design_workdir=D --grid_workdir=G

Runs (or resumes, or only reports) configs/lm_mixture_design.py in --design_workdir, then the
injection study (configs/lm_size_by_frequency.py, the same sizes, seeds, steps and criterion)
with --points frequencies log-spaced over the design's first-round span (initial_frequency /
bracket_factor .. initial_frequency x bracket_factor) in --grid_workdir. Per task, size and
length: the design's threshold and whether it lies in the grid's range (threshold_low,
threshold_high]; the models each trained (controls included), the ratio, and the models a grid
at the design's own final bracket ratio over the same span would train. JSON in
benchmarks/results/lm_mixture_design_vs_grid.json.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import timing
from rare_tasks.core import tables

RESULTS = timing.REPO / "benchmarks" / "results" / "lm_mixture_design_vs_grid.json"


def _main(*args: str) -> None:
  subprocess.run([sys.executable, "-m", "experiments.main", *args], cwd=timing.REPO, check=True)


def grid_frequencies(design_config: dict[str, Any], points: int) -> list[float]:
  d = design_config["design"]
  low = d["initial_frequency"] / d["bracket_factor"]
  high = d["initial_frequency"] * d["bracket_factor"]
  return [float(f"{f:.5g}") for f in np.geomspace(low, high, points)]


def compare(design_wd: Path, grid_wd: Path) -> dict[str, Any]:
  """The comparison of two finished work directories."""
  design = tables.read_csv(design_wd / "mixture_design.csv")
  config = json.loads((design_wd / "config.json").read_text())
  criterion = config["learned"]["criterion"]
  grid_rows = {(r["task"], r["size"], r["steps"]): r
               for r in tables.read_csv(grid_wd / "thresholds.csv") if r["metric"] == criterion}
  sizes = []
  for r in design:
    g = grid_rows[(r["task"], r["size"], r["steps"])]
    t, lo, hi = float(r["threshold"]), float(g["threshold_low"]), float(g["threshold_high"])
    sizes.append({"task": r["task"], "size": r["size"], "steps": int(r["steps"]),
                  "design_threshold": t, "design_resolution": float(r["resolution"]),
                  "grid_threshold": float(g["threshold"]), "grid_range": [lo, hi],
                  "inside": bool(lo < t <= hi * (1 + 1e-9))})  # 0.07 vs 0.07000000000000002
  design_models = sum(len(json.loads(p.read_text()))
                      for p in sorted((design_wd / "rounds").glob("round*/cells.json")))
  grid_models = len(json.loads((grid_wd / "run.json").read_text())["cells"])
  grid_freqs = json.loads((grid_wd / "config.json").read_text())["grid"]["frequency"]
  span = max(grid_freqs) / min(grid_freqs)
  finest = min(s["design_resolution"] for s in sizes if math.isfinite(s["design_resolution"]))
  seeds = len(config["grid"]["seed"])
  keys = len(sizes)
  pairs = len({(s["size"], s["steps"]) for s in sizes})
  points = math.ceil(math.log(span) / math.log(finest)) + 1
  same_resolution = points * seeds * keys + pairs * seeds
  return {"sizes": sizes, "all_inside": all(s["inside"] for s in sizes),
          "design_models": design_models, "grid_models": grid_models,
          "grid_points": len(grid_freqs), "grid_ratio": span ** (1 / (len(grid_freqs) - 1)),
          "grid_over_design": grid_models / design_models,
          "design_final_bracket_ratio": finest,
          "grid_models_at_design_resolution": same_resolution,
          "at_design_resolution_over_design": same_resolution / design_models}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/lm_mixture_design.py")
  parser.add_argument("--design_workdir", default="workdirs/lm_mixture_vs_grid/design")
  parser.add_argument("--grid_workdir", default="workdirs/lm_mixture_vs_grid/grid")
  parser.add_argument("--points", type=int, default=13)
  args = parser.parse_args()
  design_wd, grid_wd = Path(args.design_workdir), Path(args.grid_workdir)
  _main(f"--config={args.config}", f"--workdir={design_wd}")
  config = json.loads((design_wd / "config.json").read_text())
  freqs = grid_frequencies(config, args.points)
  g = config["grid"]
  _main("--config=configs/lm_size_by_frequency.py", f"--workdir={grid_wd}",
        f"--config.grid.size=({','.join(repr(s) for s in g['size'])},)",
        f"--config.grid.seed=({','.join(map(str, g['seed']))},)",
        f"--config.grid.task=({','.join(repr(t) for t in g['task'])},)",
        f"--config.grid.frequency=({','.join(map(str, freqs))},)",
        f"--config.train.steps={config['train']['steps']}",
        f"--config.learned.criterion={config['learned']['criterion']}",
        f"--config.learned.threshold={config['learned']['threshold']}")
  result = compare(design_wd, grid_wd)
  print(json.dumps(result, indent=1))
  RESULTS.parent.mkdir(parents=True, exist_ok=True)
  RESULTS.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
  main()
