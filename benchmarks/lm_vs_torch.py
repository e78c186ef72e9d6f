"""Our decoder's training step against the same decoder trained in eager PyTorch, side by side.

  python -m benchmarks.lm_vs_torch [--repeats 9] [--torch_python auto|PATH]
      [--torch_optimizer default|foreach|fused] [--out PATH]

For `cpu_d32` and `cpu_d128` (one model, 2 layers, rows of 64, batch 32, vocabulary 512,
float32: benchmarks.lm's CPU setting), three timers each:

- ours on 1 device and on all devices (one JAX device per core, as `experiments.main` sets up;
  "all devices" splits the batch), each a chunk of `--steps` steps exactly as benchmarks.lm
  times it: Markov batches generated on the device, then one scanned dispatch of the trainer;
- benchmarks/reference/lm_torch.py, the same OLMo-2 decoder in plain torch.nn with
  torch.optim.AdamW and random token batches, run in a subprocess by `--torch_python` (auto:
  this Python, if it has torch) with torch's default threads (one per core). Each call starts
  the script, which warms up and times `--torch_chunks` chunks of `--steps` steps itself and
  reports their median: interpreter start-up and warm-up are not timed.

The timers are interleaved (their order rotating each repeat) and the medians compared: the
ratio is our tokens/s over PyTorch's. Every call also records how many cores other processes
kept busy meanwhile (from /proc/stat; a shared machine slows eager PyTorch's OpenMP threads far
more than XLA's), and the medians are given again over the calls in which that stayed under
`--quiet_cores`, when there are enough of them; each call first waits up to `--wait_quiet`
seconds for a moment in which other processes keep fewer cores than that busy. JSON in
benchmarks/results/lm_vs_torch_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax

from benchmarks import lm, timing
from rare_tasks.core import mesh as core_mesh
from rare_tasks.lm import ladder

TORCH_REFERENCE = timing.REPO / "benchmarks" / "reference" / "lm_torch.py"
PRESETS = ("cpu_d32", "cpu_d128")
OURS = {"1 device": 1, "all devices": 0}
MIN_QUIET = 3  # calls needed for the quiet medians


def _busy_seconds() -> tuple[float, float]:
  """(seconds every core of the machine was busy, this process's and its children's CPU
  seconds) so far; (nan, nan) where /proc/stat cannot be read."""
  try:
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
  except OSError:
    return float("nan"), float("nan")
  idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
  own = sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
  return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK"), own


def _others_cores(busy0: float, own0: float, wall: float) -> float:
  """Cores other processes kept busy since _busy_seconds() gave (busy0, own0), `wall` ago."""
  busy1, own1 = _busy_seconds()
  return max(0.0, (busy1 - busy0) - (own1 - own0)) / wall


def wait_quiet(cores: float, limit_s: float, window_s: float = 0.5) -> None:
  """Waits, up to limit_s, for a window of window_s in which other processes keep fewer than
  `cores` cores busy."""
  deadline = time.perf_counter() + limit_s
  while time.perf_counter() < deadline:
    busy0, own0 = _busy_seconds()
    time.sleep(window_s)
    if not _others_cores(busy0, own0, window_s) >= cores:  # nan (no /proc/stat): go on
      return


def with_load(timer: Callable[[], float], args: argparse.Namespace
              ) -> Callable[[], tuple[float, float]]:
  """A timer that first waits for a quiet machine (wait_quiet), then also returns the cores
  other processes kept busy while it ran."""
  def timed() -> tuple[float, float]:
    wait_quiet(args.quiet_cores, args.wait_quiet)
    busy0, own0 = _busy_seconds()
    start = time.perf_counter()
    seconds = timer()
    return seconds, _others_cores(busy0, own0, time.perf_counter() - start)
  return timed


def torch_timer(python: str, preset: str, args: argparse.Namespace,
                out: Path) -> Callable[[], float]:
  """A timer that runs the PyTorch reference of `preset` once and returns its median chunk
  seconds (the script's own timing of its chunks, after its warm-up)."""
  shape = ladder.PRESETS[preset].shape
  cmd = [python, str(TORCH_REFERENCE), f"--d_model={shape.d_model}", f"--layers={args.layers}",
         f"--heads={shape.num_heads}", f"--rows={args.seq_len}", f"--batch={args.batch}",
         f"--vocab={args.vocab}", f"--steps={args.steps}", f"--repeats={args.torch_chunks}",
         f"--warmup={args.torch_warmup}", f"--optimizer={args.torch_optimizer}", f"--out={out}"]
  assert shape.mlp_hidden == 4 * shape.d_model  # the reference's SwiGLU width

  def run() -> float:
    proc = subprocess.run(cmd, cwd=timing.REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
      raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(out.read_text())["median_s"]
  return run


def timers(python: str, args: argparse.Namespace, tmp: Path) -> tuple[dict[str, Any], int]:
  """Every timer by name ("cpu_d32 ours 1 device", "cpu_d32 torch", ...), compiled and warmed
  up, and the tokens each call trains."""
  out: dict[str, Any] = {}
  for preset in PRESETS:
    for where, devices in OURS.items():
      out[f"{preset} ours {where}"] = with_load(lm.Timed(lm.Case(preset, 1, devices), args).run,
                                                args)
    out[f"{preset} torch"] = with_load(torch_timer(python, preset, args, tmp / f"{preset}.json"),
                                       args)
  return out, args.steps * args.batch * args.seq_len


def summarise(raw: dict[str, list[tuple[float, float]]], tokens: int,
              quiet_cores: float) -> dict[str, Any]:
  """Per timer: its calls, median seconds and tokens/s, and the same over its quiet calls."""
  out: dict[str, Any] = {}
  for name, calls in raw.items():
    seconds = [s for s, _ in calls]
    quiet = [s for s, others in calls if others < quiet_cores]
    median = statistics.median(seconds)
    out[name] = {"raw_s": seconds, "other_processes_cores": [o for _, o in calls],
                 "median_s": median, "tokens_per_s": tokens / median,
                 "quiet_calls": len(quiet),
                 "quiet_tokens_per_s": (tokens / statistics.median(quiet)
                                        if len(quiet) >= MIN_QUIET else None)}
  return out


def ratios(cases: dict[str, Any], key: str) -> dict[str, float | None]:
  """Our tokens/s over PyTorch's (by `key`: "tokens_per_s" or "quiet_tokens_per_s"), per preset
  and placement."""
  out: dict[str, float | None] = {}
  for preset in PRESETS:
    theirs = cases[f"{preset} torch"][key]
    for where in OURS:
      ours = cases[f"{preset} ours {where}"][key]
      out[f"{preset} {where}"] = ours / theirs if ours and theirs else None
  return out


def measure(args: argparse.Namespace, python: str) -> dict[str, Any]:
  with tempfile.TemporaryDirectory(prefix="bench_lm_torch_") as tmp:
    timed, tokens = timers(python, args, Path(tmp))
    raw = timing.interleaved(timed, args.repeats)
  cases = summarise(raw, tokens, args.quiet_cores)
  return {"cases": cases, "tokens_per_call": tokens,
          "ratio_over_torch": ratios(cases, "tokens_per_s"),
          "quiet_ratio_over_torch": ratios(cases, "quiet_tokens_per_s"),
          "torch_reference": {"script": str(TORCH_REFERENCE.relative_to(timing.REPO)),
                              "python": python, "optimizer": args.torch_optimizer},
          "timing": "seconds per chunk of `steps` steps; timers interleaved, medians over "
                    "repeats; PyTorch's value of a call is the median of its chunks"}


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--repeats", type=int, default=9)
  p.add_argument("--steps", type=int, default=10, help="steps per timed chunk")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--seq_len", type=int, default=64)
  p.add_argument("--vocab", type=int, default=512)
  p.add_argument("--layers", type=int, default=2)
  p.add_argument("--torch_python", default="auto",
                 help="Python with torch for the eager reference (auto: this one if it has "
                      "torch)")
  p.add_argument("--torch_optimizer", default="default", choices=("default", "foreach", "fused"),
                 help="torch.optim.AdamW's implementation in the reference")
  p.add_argument("--torch_chunks", type=int, default=3, help="chunks each PyTorch call times")
  p.add_argument("--torch_warmup", type=int, default=5, help="untimed steps of each call")
  p.add_argument("--quiet_cores", type=float, default=0.25,
                 help="a call is quiet when other processes kept fewer cores busy")
  p.add_argument("--wait_quiet", type=float, default=60.0,
                 help="seconds each call may wait for a quiet machine first")
  p.add_argument("--out", type=Path, default=lm.RESULTS / "lm_vs_torch_cpu.json")
  return p.parse_args(argv)


def report(r: dict[str, Any]) -> None:
  for name, v in r["cases"].items():
    quiet = v["quiet_tokens_per_s"]
    print(f"{name:<28} {v['tokens_per_s']:>10,.0f} tokens/s   quiet ({v['quiet_calls']} calls) "
          + (f"{quiet:>10,.0f}" if quiet else "         -"))
  for name, x in r["ratio_over_torch"].items():
    quiet = r["quiet_ratio_over_torch"][name]
    print(f"ours / torch, {name:<22} {x:.2f}x   quiet " + (f"{quiet:.2f}x" if quiet else "-"))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  args = _arguments(argv)
  core_mesh.use_cpu_cores()  # before any JAX computation, as experiments.main does
  python = timing.torch_python(args.torch_python)
  if python is None:
    raise SystemExit("no PyTorch: this Python has no torch (--torch_python PATH names one)")
  r = measure(args, python)
  r = {**timing.environment(jax.devices()[0]),
       "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, **r}
  report(r)
  timing.write_json(args.out, r, final=True)
  return r


if __name__ == "__main__":
  main()
