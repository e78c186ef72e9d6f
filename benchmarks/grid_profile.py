"""Where one invocation of a grid study spends its time, phase by phase.

  python -m benchmarks.grid_profile --out PATH -- --config=configs/width_by_frequency.py ...

Runs `experiments.main` in this process with the arguments after `--`, exactly as the command
line would, and writes a JSON table of seconds per phase:

- imports: importing experiments.main and the grid study's modules (jax, the library,
  matplotlib);
- trace, lower: JAX tracing the jitted programs to jaxprs and lowering them to StableHLO (paid on
  every invocation, cache or not: the cache key is computed from the lowered program);
- compile or load: XLA compiling each program, or reading it back from the persistent
  compilation cache (of which cache_read, the reading alone);
- train steps: the training chunks on the devices, waited for (also per group);
- evaluation: the evaluation programs on the devices, waited for;
- host measurement: the host side of each evaluation (the measurements read off the arrays,
  metrics.jsonl and trace records);
- checkpoints: writing (and on a resume, reading) the groups' checkpoints;
- groups' set-up: placing each group's constants and state on its devices;
- results and report: results.csv, the tables, the figures and summary.md after training;
- other: the rest of the run (config checks, the work directory, the closed form).

Every device call is waited for where it is made, so the phases do not overlap; the sum is the
profiled run's wall time, a little longer than an unprofiled run, whose device work overlaps with
the host's. Compilation inside a timed call is counted under trace, lower and compile, not there.
Interpreter start-up before the first line of this module is not inside: the caller measures the
subprocess's whole wall time beside it.
"""

from __future__ import annotations

import time

_START = time.perf_counter()

import argparse  # noqa: E402
import functools  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

PHASES = ("imports", "trace", "lower", "compile_or_load", "train_steps", "evaluation",
          "host_measurement", "checkpoints", "group_setup", "results_and_report", "other")
# JAX's own timings of the steps of building a program (jax.monitoring events).
_JAX_EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace",
               "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
               "/jax/core/compile/backend_compile_duration": "compile_or_load"}
_CACHE_READ_EVENT = "/jax/compilation_cache/cache_retrieval_time_sec"


def _merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
  out: list[tuple[float, float]] = []
  for a, b in sorted(spans):
    if out and a <= out[-1][1]:
      out[-1] = (out[-1][0], max(out[-1][1], b))
    else:
      out.append((a, b))
  return out


def _overlap(a: tuple[float, float], spans: list[tuple[float, float]]) -> float:
  """Seconds of interval `a` covered by the merged `spans`."""
  return sum(max(0.0, min(a[1], e) - max(a[0], s)) for s, e in spans)


def _measure_minus(spans: list[tuple[float, float]], minus: list[tuple[float, float]]) -> float:
  """Seconds covered by merged `spans` and not by merged `minus`."""
  return sum((e - s) - _overlap((s, e), minus) for s, e in spans)


class _Clock:
  """Intervals of the run's phases, from the wrapped calls and JAX's own events."""

  def __init__(self):
    self.build: dict[str, list[tuple[float, float]]] = defaultdict(list)
    self.timed_calls: list[tuple[str, float, float]] = []
    self.train_by_group: dict[str, list[tuple[float, float]]] = defaultdict(list)
    self.cache_read_s = 0.0
    self.calls: dict[str, int] = defaultdict(int)
    self._depth = 0

  def jax_span(self, event: str, start: float, end: float, **_: Any) -> None:
    if event in _JAX_EVENTS:
      self.build[_JAX_EVENTS[event]].append((start, end))
      self.calls[_JAX_EVENTS[event]] += 1

  def jax_duration(self, event: str, duration: float, **_: Any) -> None:
    if event == _CACHE_READ_EVENT:
      self.cache_read_s += duration

  def timed(self, phase: str, fn, wait: bool = False):
    """fn, its interval recorded under `phase` (a call inside another timed call is the outer
    call's); with `wait`, its device arrays are waited for inside the interval."""
    import jax

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      outer = self._depth == 0
      start = time.time()
      self._depth += 1
      try:
        out = fn(*args, **kwargs)
        if wait:
          out = jax.block_until_ready(out)
      finally:
        self._depth -= 1
      if outer:
        self.timed_calls.append((phase, start, time.time()))
        self.calls[phase] += 1
        if phase == "train_steps":  # a GroupRun's chunk: args[0] is the GroupRun
          self.train_by_group[args[0].group.name].append(self.timed_calls[-1][1:])
      return out
    return wrapper

  def _net(self, a: float, b: float) -> float:
    """Seconds of [a, b] not spent building programs."""
    return (b - a) - _overlap((a, b), _merged([s for v in self.build.values() for s in v]))

  def seconds(self) -> dict[str, float]:
    """Seconds per phase; program building (innermost first: compile, lower, trace) is taken
    out of the timed calls it happened in."""
    compile_ = _merged(self.build["compile_or_load"])
    lower = _merged(self.build["lower"])
    trace = _merged(self.build["trace"])
    out = {"compile_or_load": _measure_minus(compile_, []),
           "lower": _measure_minus(lower, compile_),
           "trace": _measure_minus(trace, _merged(compile_ + lower))}
    for phase, a, b in self.timed_calls:
      out[phase] = out.get(phase, 0.0) + self._net(a, b)
    return out

  def train_seconds_by_group(self) -> dict[str, float]:
    return {name: sum(self._net(a, b) for a, b in calls)
            for name, calls in self.train_by_group.items()}


def _patch(clock: _Clock) -> None:
  """Times the grid study's phases by wrapping the library's functions in this process."""
  from rare_tasks.core import checkpoints, traces, workdir
  from rare_tasks.synthetic import grid_study, training

  g = training.GroupRun
  g.chunk = clock.timed("train_steps", g.chunk, wait=True)
  g.evaluate = clock.timed("evaluation", g.evaluate, wait=True)
  g.init = clock.timed("group_setup", g.init, wait=True)
  g.__init__ = clock.timed("group_setup", g.__init__)
  g.from_host = clock.timed("checkpoints", g.from_host, wait=True)
  g.checkpoint = clock.timed("checkpoints", g.checkpoint, wait=True)
  g.records = clock.timed("host_measurement", g.records)
  g.trace_arrays = clock.timed("host_measurement", g.trace_arrays)
  for name in ("save", "restore"):
    setattr(checkpoints.GroupCheckpoints, name,
            clock.timed("checkpoints", getattr(checkpoints.GroupCheckpoints, name)))
  workdir.append_metrics = clock.timed("host_measurement", workdir.append_metrics)
  traces.write_chunk = clock.timed("host_measurement", traces.write_chunk)
  # Everything the study does after training: results, tables, figures, summary.
  for name in ("build_results", "write_results"):
    setattr(grid_study.results, name,
            clock.timed("results_and_report", getattr(grid_study.results, name)))
  grid_study.reports.write_summary = clock.timed("results_and_report",
                                                 grid_study.reports.write_summary)
  for section in (*grid_study.OPENING, *grid_study.MEASUREMENTS):
    section.section = clock.timed("results_and_report", section.section)
  grid_study.overview.index = clock.timed("results_and_report", grid_study.overview.index)


def profile(main_args: list[str]) -> dict[str, Any]:
  """Runs experiments.main with `main_args`; -> seconds per phase and the run's wall time."""
  clock = _Clock()
  start = time.perf_counter()
  main = importlib.import_module("experiments.main")
  _patch(clock)  # imports the grid study's modules, which the study would import as it starts
  imports_s = time.perf_counter() - start
  import jax
  from absl import app

  jax.monitoring.register_event_time_span_listener(clock.jax_span)
  jax.monitoring.register_event_duration_secs_listener(clock.jax_duration)
  try:
    app.run(main.main, argv=["experiments.main", *main_args], flags_parser=main.parse)
  except SystemExit as e:
    if e.code not in (0, None):
      raise
  total = time.perf_counter() - _START
  seconds = clock.seconds()
  seconds["imports"] = imports_s
  seconds["other"] = total - sum(seconds.values())
  return {"seconds": {p: seconds.get(p, 0.0) for p in PHASES},
          "train_steps_by_group": clock.train_seconds_by_group(),
          "cache_read_s": clock.cache_read_s, "calls": dict(clock.calls),
          "in_process_wall_s": total, "phases": list(PHASES)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
  argv = sys.argv[1:] if argv is None else argv
  split = argv.index("--") if "--" in argv else len(argv)
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", type=Path, required=True, help="JSON file of the phase table")
  args = parser.parse_args(argv[:split])
  result = profile(argv[split + 1:])
  args.out.write_text(json.dumps(result, indent=2) + "\n")
  for phase, s in result["seconds"].items():
    print(f"{phase:>20}: {s:7.2f} s")
  print(f"{'in process':>20}: {result['in_process_wall_s']:7.2f} s")
  return result


if __name__ == "__main__":
  main()
