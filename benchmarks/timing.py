"""What the benchmarks share: loading a study config by path, and timers run side by side."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_collections

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
