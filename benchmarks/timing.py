"""What the benchmarks share: loading a study config by path, timers run side by side, the
trainer's sharded group as a timer, and writing results."""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from rare_tasks.synthetic import placement, training
from rare_tasks.synthetic.grid import Group
from rare_tasks.synthetic.tasks import TaskFamily

REPO = Path(__file__).resolve().parents[1]


def load_config(config_file: str, preset: str = "default") -> ml_collections.ConfigDict:
  """The config of a study file such as configs/width_by_frequency.py (not a package, so loaded
  by path from the repository root)."""
  name = "_study_" + Path(config_file).stem
  spec = importlib.util.spec_from_file_location(name, REPO / config_file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


def interleaved(timers: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[Any]]:
  """Runs each timer once per repeat, rotating their order; returns each one's results."""
  names = list(timers)
  out: dict[str, list[Any]] = {n: [] for n in names}
  for r in range(repeats):
    k = r % len(names)
    for name in names[k:] + names[:k]:
      out[name].append(timers[name]())
  return out


class ShardedGroup:
  """A group exactly as the trainer trains it: padded and sharded over all local devices.

  Compiled and run once on construction; `run` then times one chunk of `num_steps` steps.
  """

  def __init__(self, config: ml_collections.ConfigDict, group: Group, task: TaskFamily,
               num_steps: int):
    self._run = training.GroupRun(config, group, task, placement.ensemble_mesh())
    self._steps = num_steps
    self.state = self._run.init()
    self.state, _, _ = self._run.chunk(self.state, num_steps)  # compile and warm up
    jax.block_until_ready(self.state)

  def run(self) -> float:
    start = time.perf_counter()
    self.state, loss, _ = self._run.chunk(self.state, self._steps)
    jax.block_until_ready((self.state, loss))
    return time.perf_counter() - start


def seconds(fn: Callable[[], Any]) -> Callable[[], float]:
  """A timer: calls fn and returns the seconds it took."""
  def timed() -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
  return timed


def matmul_timer(device: jax.Device, n: int,
                 dtype: Any = jnp.float32) -> tuple[Callable[[], float], float]:
  """A timer of one n x n @ n x n matmul on `device`, compiled and warmed up; and its compile
  time. It does 2 n^3 FLOPs."""
  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.device_put(jax.random.normal(ka, (n, n), dtype), device)
  b = jax.device_put(jax.random.normal(kb, (n, n), dtype), device)
  start = time.perf_counter()
  matmul = jax.jit(jnp.matmul).lower(a, b).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(matmul(a, b))
  return seconds(lambda: jax.block_until_ready(matmul(a, b))), compile_s


def parse_ints(text: str) -> list[int]:
  """A comma-separated list of integers (an argparse type)."""
  return [int(x) for x in text.split(",") if x.strip()]


def environment(device: jax.Device) -> dict[str, Any]:
  """Where and when a benchmark ran, the first fields of its JSON."""
  return {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
          "jax_version": jax.__version__, "python": platform.python_version(),
          "host": platform.node(), "platform": device.platform,
          "device_kind": device.device_kind, "device_count": jax.device_count(),
          "cpu_count": os.cpu_count()}


def met(ok: bool) -> str:
  return "met" if ok else "NOT met"


def write_json(out: Path, results: dict[str, Any], final: bool = False) -> None:
  """Writes a benchmark's results, creating its folder (and says so when `final`)."""
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(results, indent=2) + "\n")
  if final:
    print(f"wrote {out}")


def torch_python(choice: str) -> str | None:
  """The Python that runs the PyTorch reference: `choice`, or with "auto" this one if it has
  torch; None when there is none ("none", or "auto" without torch)."""
  if choice == "none":
    return None
  if choice == "auto":
    return sys.executable if importlib.util.find_spec("torch") is not None else None
  return choice
