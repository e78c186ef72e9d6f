"""Renamed: the injection study sweeps sizes, not widths, and is now `lm_size_by_frequency`
(configs/lm_size_by_frequency.py, with the same presets). This path keeps working: it says so
and returns that config."""

import importlib.util
import pathlib
import sys

_NEW = pathlib.Path(__file__).with_name("lm_size_by_frequency.py")


def get_config(preset: str = "default"):
  print("configs/lm_width_by_frequency.py was renamed configs/lm_size_by_frequency.py (study "
        "lm_size_by_frequency); running that", file=sys.stderr)
  spec = importlib.util.spec_from_file_location("lm_size_by_frequency", _NEW)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)
