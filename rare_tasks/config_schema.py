"""The config of a grid study: every field, its default, and the checks run before any compute.

Study files in `configs/` start from `base_config()` and change values; a field that is not in
the schema (a typo) is refused with the closest known names.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable, Collection, Sequence
from typing import Any

import ml_collections

from rare_tasks import retention
from rare_tasks.models import ACTIVATIONS, MODELS
from rare_tasks.optimizers import OPTIMIZERS, SCHEDULES
from rare_tasks.tasks import TASKS
from rare_tasks.tasks.linear_mixture import BASES, SPECTRUM_NORMALIZATIONS

# Grid axis -> the config field each of its values overrides.
GRID_AXES = {
    "width": "model.width",
    "activation": "model.activation",
    "num_hidden_layers": "model.num_hidden_layers",
    "seed": "seed",
    "beta": "task.beta",
    "rare_frequency": "task.rare_frequency",
    "common_exponent": "task.common_exponent",
    "learning_rate": "train.learning_rate",
    "gap": "injection.gap",
}

INJECTION_MODES = ("mixture", "bursts")
STUDIES = ("grid", "mixture_design")


class ConfigError(ValueError):
  """A config value that is not allowed; the message names the field, the value and the rule."""


def base_config() -> ml_collections.ConfigDict:
  """Every field a grid study has, with small defaults that double as a quick test setting."""
  c = ml_collections.ConfigDict()
  # "grid": train every cell of the grid. "mixture_design": per grid width (and seed), search
  # for the smallest rare frequency that is learned (rare_tasks.mixture_design; the search sets
  # the frequencies, so grid.rare_frequency stays unset).
  c.study = "grid"
  c.seed = 0
  # Not type-safe: task.beta holds one number or one per task (validate() checks the values).
  # Task family fields: name, num_tasks, num_rare, common_exponent and rare_frequency are read
  # by every family; block_size, beta, basis, basis_seed and spectrum_normalization by
  # linear_mixture; num_bits, parity_bits and secret_seed by sparse_parity.
  c.task = ml_collections.ConfigDict(dict(
      name="linear_mixture", num_tasks=16, block_size=8, num_rare=1, common_exponent=1.0,
      beta=1.0, rare_frequency=0.01, basis="rotation", basis_seed=0,
      spectrum_normalization="top", num_bits=32, parity_bits=3, secret_seed=0), type_safe=False)
  c.model = ml_collections.ConfigDict(dict(
      name="encoder_heads", width=32, activation="identity", num_hidden_layers=0))
  c.train = ml_collections.ConfigDict(dict(
      steps=2000, batch_size=256, learning_rate=3e-3, optimizer="adam", schedule="constant",
      warmup_steps=0, final_lr_fraction=0.0, momentum=0.0))
  # How the rare tasks reach the batches: "mixture" (i.i.d. from the mixture every step) or
  # "bursts" (withheld for withhold_steps updates, then rare_frequency * gap * batch_size rare
  # examples every gap-th update, so that the long-run frequency is exactly rare_frequency).
  c.injection = ml_collections.ConfigDict(dict(mode="mixture", gap=1, withhold_steps=0))
  # Mechanism measurements: at every evaluation (allocation, interference on
  # interference_samples examples per task) or after every step (trace_rare: the rare tasks'
  # exact FVU and feature capture, linear encoders only).
  c.measure = ml_collections.ConfigDict(dict(
      allocation=False, interference=False, interference_samples=256, trace_rare=False))
  # Each list under grid expands into cells (their product); an empty grid is one cell. Every
  # axis is present, unset (None) when not swept, so that any axis can be swept from the
  # command line (--config.grid.learning_rate='(1e-3,3e-3)').
  c.grid = ml_collections.ConfigDict(
      {axis: ml_collections.config_dict.placeholder(tuple) for axis in GRID_AXES})
  c.grid.width = (32,)
  c.grid.rare_frequency = (0.01,)
  c.grid.seed = (0,)
  c.eval_every = 500
  c.eval_samples = 4096
  # A task counts as learned when its headline loss is at or below this: the FVU for
  # linear_mixture, the cross-entropy in bits (1 = chance) for sparse_parity.
  c.learned_fvu = 0.8
  # The mixture design search (study = "mixture_design"): candidates per width and round, the
  # first round's span (center / bracket_factor .. center * bracket_factor; the center is the
  # closed-form critical frequency, or initial_frequency for a family without one), rounds of
  # refinement and of bracket expansion, the frequency range searched, and the frequencies the
  # inverse table (smallest width that learns them) is given for (None: spread over the
  # measured range).
  c.design = ml_collections.ConfigDict(dict(
      num_candidates=8, bracket_factor=4.0, refine_rounds=2, max_expansions=3,
      min_frequency=1e-5, max_frequency=0.5, initial_frequency=0.01,
      target_frequencies=ml_collections.config_dict.placeholder(tuple)))
  # Scaling analysis after a grid run (rare_tasks.scaling_report): fit L(N) = L0 + A N^-alpha
  # over the width grid with bootstrap_resamples resamples of the seeds; the small and large
  # widths (0: the grid's narrowest and widest) and the epsilon of the paper's figure 1.
  c.scaling = ml_collections.ConfigDict(dict(
      enabled=False, small_width=0, large_width=0, epsilon=0.05, bootstrap_resamples=1000))
  # Checkpoints are written at evaluation steps, at most this often (and always at the end).
  c.checkpoint_interval_s = 30.0
  return c


def linear_study_config() -> ml_collections.ConfigDict:
  """base_config() in the studies' linear setting (PAPER.md section 2): K = 16 tasks of m = 8
  features, one rare, common tasks at power-law exponent 1.5, spectra j^-1, batch 256."""
  c = base_config()
  c.task.num_tasks = 16
  c.task.block_size = 8
  c.task.num_rare = 1
  c.task.common_exponent = 1.5
  c.task.beta = 1.0
  c.train.batch_size = 256
  return c


def study_preset(study: str, preset: str, presets: Sequence[str]) -> str:
  """The preset a study file was asked for ("" is "default"); ValueError naming the allowed."""
  preset = preset or "default"
  if preset not in presets:
    raise ValueError(f"configs/{study}.py:{preset}: unknown preset; allowed: {tuple(presets)}")
  return preset


def _is_int(v: Any) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _check(ok: bool, field: str, value: Any, allowed: str) -> None:
  if not ok:
    raise ConfigError(f"config.{field} = {value!r}: allowed: {allowed}")


def _positive_int(field: str, v: Any) -> None:
  _check(_is_int(v) and v > 0, field, v, "an integer > 0")


def _nonneg_int(field: str, v: Any) -> None:
  _check(_is_int(v) and v >= 0, field, v, "an integer >= 0")


def _positive_real(field: str, v: Any) -> None:
  _check(_is_real(v) and v > 0, field, v, "a finite number > 0")


def _real(field: str, v: Any) -> None:
  _check(_is_real(v), field, v, "a finite number")


def _choice(options: Collection[str]) -> Callable[[str, Any], None]:
  def check(field: str, v: Any) -> None:
    _check(v in options, field, v, f"one of {sorted(options)}")
  return check


def _fraction_closed(field: str, v: Any) -> None:
  _check(_is_real(v) and 0 <= v <= 1, field, v, "a number in [0, 1]")


def _open_unit(field: str, v: Any) -> None:
  _check(_is_real(v) and 0 < v < 1, field, v, "a number in (0, 1)")


def _bool(field: str, v: Any) -> None:
  _check(isinstance(v, bool), field, v, "True or False")


def _beta(field: str, v: Any) -> None:
  values = list(v) if isinstance(v, (list, tuple)) else [v]
  _check(len(values) > 0 and all(_is_real(b) and b >= 0 for b in values), field, v,
         "a number >= 0, or one number >= 0 per task")


def _parity_bits(field: str, v: Any) -> None:
  values = list(v) if isinstance(v, (list, tuple)) else [v]
  _check(len(values) > 0 and all(_is_int(k) and k >= 1 for k in values), field, v,
         "an integer >= 1, or one integer >= 1 per task")


def _target_frequencies(field: str, v: Any) -> None:
  _check(v is None or (isinstance(v, (list, tuple)) and len(v) > 0
                       and all(_is_real(f) and 0 < f < 1 for f in v)), field, v,
         "None, or a non-empty list of frequencies in (0, 1)")


_FIELD_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "study": _choice(STUDIES),
    "seed": _nonneg_int,
    "task.name": _choice(TASKS),  # read when checked: families registered later count
    "task.num_tasks": lambda f, v: _check(_is_int(v) and v >= 2, f, v, "an integer >= 2"),
    "task.block_size": _positive_int,
    "task.num_rare": _positive_int,
    "task.common_exponent": _real,
    "task.beta": _beta,
    "task.rare_frequency": _open_unit,
    "task.basis": _choice(BASES),
    "task.basis_seed": _nonneg_int,
    "task.spectrum_normalization": _choice(SPECTRUM_NORMALIZATIONS),
    "task.num_bits": _positive_int,
    "task.parity_bits": _parity_bits,
    "task.secret_seed": _nonneg_int,
    "model.name": _choice(MODELS),
    "model.width": _positive_int,
    "model.activation": _choice(tuple(ACTIVATIONS)),
    "model.num_hidden_layers": _nonneg_int,
    "train.steps": _positive_int,
    "train.batch_size": _positive_int,
    "train.learning_rate": _positive_real,
    "train.optimizer": _choice(OPTIMIZERS),
    "train.schedule": _choice(SCHEDULES),
    "train.warmup_steps": _nonneg_int,
    "train.final_lr_fraction": _fraction_closed,
    "train.momentum": lambda f, v: _check(_is_real(v) and 0 <= v < 1, f, v, "a number in [0, 1)"),
    "injection.mode": _choice(INJECTION_MODES),
    "injection.gap": _positive_int,
    "injection.withhold_steps": _nonneg_int,
    "measure.allocation": _bool,
    "measure.interference": _bool,
    "measure.interference_samples": _positive_int,
    "measure.trace_rare": _bool,
    "design.num_candidates": lambda f, v: _check(_is_int(v) and v >= 2, f, v, "an integer >= 2"),
    "design.bracket_factor": lambda f, v: _check(_is_real(v) and v > 1, f, v, "a number > 1"),
    "design.refine_rounds": _nonneg_int,
    "design.max_expansions": _nonneg_int,
    "design.min_frequency": _open_unit,
    "design.max_frequency": _open_unit,
    "design.initial_frequency": _open_unit,
    "design.target_frequencies": _target_frequencies,
    "scaling.enabled": _bool,
    "scaling.small_width": _nonneg_int,
    "scaling.large_width": _nonneg_int,
    "scaling.epsilon": lambda f, v: _check(_is_real(v) and v >= 0, f, v, "a number >= 0"),
    "scaling.bootstrap_resamples": _positive_int,
    "eval_every": _positive_int,
    "eval_samples": _positive_int,
    "learned_fvu": _positive_real,
    "checkpoint_interval_s": lambda f, v: _check(_is_real(v) and v >= 0, f, v, "a number >= 0"),
}


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    path = f"{prefix}{k}"
    if isinstance(v, (dict, ml_collections.ConfigDict)) and k != "grid":
      out.update(_flatten(v, path + "."))
    else:
      out[path] = v
  return out


def _unknown(field: str, known: Sequence[str]) -> ConfigError:
  close = difflib.get_close_matches(field, known, n=3)
  hint = f"; did you mean {', '.join('config.' + c for c in close)}?" if close else ""
  return ConfigError(f"config.{field} is not a known field{hint}")


def grid_values(config: ml_collections.ConfigDict) -> dict[str, tuple]:
  """The grid as {axis: tuple of values} (unset axes left out), axes in alphabetical order
  (ConfigDict's order). An axis is unset when None, or (None,), which is what
  `--config.grid.<axis>=None` gives on the command line."""
  grid = config.get("grid") or {}
  out = {}
  for axis, values in grid.items():
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if values != (None,):
      out[axis] = values
  return out


def _check_family(flat: dict[str, Any], grid: dict[str, tuple]) -> None:
  """Checks that depend on the task family: its model, and sparse parity's bit counts."""
  name = flat["task.name"]
  models = TASKS[name].models
  _check(flat["model.name"] in models, "model.name", flat["model.name"],
         f"one of {list(models)} for task {name!r}")
  if name != "sparse_parity":
    return
  _check("beta" not in grid, "grid.beta", grid.get("beta"),
         "unset for sparse_parity (its complexity is config.task.parity_bits)")
  ks = flat["task.parity_bits"]
  num_tasks, num_bits = flat["task.num_tasks"], flat["task.num_bits"]
  if isinstance(ks, (list, tuple)):
    _check(len(ks) == num_tasks, "task.parity_bits", ks,
           f"one integer, or exactly task.num_tasks = {num_tasks} integers")
  for k in (ks if isinstance(ks, (list, tuple)) else [ks]):
    _check(k <= num_bits, "task.parity_bits", ks,
           f"integers <= task.num_bits = {num_bits} (a secret set is k distinct bits)")


def _check_design(flat: dict[str, Any], grid: dict[str, tuple]) -> None:
  """A mixture design searches the rare frequency per width and seed, nothing else."""
  for axis in grid:
    _check(axis in ("width", "seed"), f"grid.{axis}", grid[axis],
           "unset for study 'mixture_design' (it sweeps grid.width and grid.seed, and searches "
           "the rare frequency itself)")
  lo, hi, num_rare = (flat["design.min_frequency"], flat["design.max_frequency"],
                      flat["task.num_rare"])
  _check(lo < hi, "design.min_frequency", lo, f"a frequency below design.max_frequency = {hi}")
  _check(num_rare * hi < 1, "design.max_frequency", hi,
         f"a frequency below 1 / task.num_rare = {1 / num_rare:.4g}")
  _check(flat["injection.mode"] == "mixture", "injection.mode", flat["injection.mode"],
         "'mixture' for study 'mixture_design'")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for the first field that is unknown, missing or out of range."""
  flat = _flatten(config.to_dict())
  known = list(_FIELD_CHECKS) + ["grid"]
  for field in flat:
    if field not in known:
      raise _unknown(field, known)
  for field in _FIELD_CHECKS:
    if field not in flat:
      raise ConfigError(f"config.{field} is missing; start study configs from "
                        "rare_tasks.config_schema.base_config()")
  for field, check in _FIELD_CHECKS.items():
    check(field, flat[field])

  grid = grid_values(config)
  for axis, values in grid.items():
    if axis not in GRID_AXES:
      close = difflib.get_close_matches(axis, list(GRID_AXES), n=3)
      hint = f"; did you mean {', '.join('config.grid.' + c for c in close)}?" if close else ""
      raise ConfigError(f"config.grid.{axis} is not a grid axis (allowed: {sorted(GRID_AXES)})"
                        f"{hint}")
    _check(len(values) > 0, f"grid.{axis}", values, "a non-empty list of values")
    _check(len(set(map(repr, values))) == len(values), f"grid.{axis}", values,
           "a list without repeated values")
    for i, v in enumerate(values):
      _FIELD_CHECKS[GRID_AXES[axis]](f"grid.{axis}[{i}]", v)

  # Cross-field checks on every value the grid can combine.
  num_tasks, num_rare = flat["task.num_tasks"], flat["task.num_rare"]
  _check(num_rare < num_tasks, "task.num_rare", num_rare,
         f"an integer in [1, task.num_tasks - 1] = [1, {num_tasks - 1}]")
  freq_field = "grid.rare_frequency" if "rare_frequency" in grid else "task.rare_frequency"
  for f in grid.get("rare_frequency", (flat["task.rare_frequency"],)):
    _check(num_rare * f < 1, freq_field, f,
           f"a frequency below 1 / task.num_rare = {1 / num_rare:.4g}, so that the "
           f"{num_rare} rare task(s) leave probability to the {num_tasks - num_rare} common ones")
  beta_field = "grid.beta" if "beta" in grid else "task.beta"
  for b in grid.get("beta", (flat["task.beta"],)):
    if isinstance(b, (list, tuple)):
      _check(len(b) == num_tasks, beta_field, b,
             f"one number, or exactly task.num_tasks = {num_tasks} numbers")

  _check_family(flat, grid)
  _check(flat["eval_samples"] >= num_tasks, "eval_samples", flat["eval_samples"],
         f"at least task.num_tasks = {num_tasks} (the evaluation batch holds every task)")
  if flat["study"] == "mixture_design":
    _check_design(flat, grid)
  if flat["scaling.enabled"]:
    widths = grid.get("width", (flat["model.width"],))
    _check(len(widths) >= 3, "grid.width", widths,
           "at least 3 widths when config.scaling.enabled (a power law in width has 3 "
           "parameters)")
    _check(flat["study"] == "grid", "scaling.enabled", True,
           f"False for study {flat['study']!r} (scaling fits need a grid run)")
    small = flat["scaling.small_width"] or min(widths)
    large = flat["scaling.large_width"] or max(widths)
    _check(small <= large, "scaling.small_width", flat["scaling.small_width"],
           f"a width <= the large width {large} (config.scaling.large_width; 0 means the "
           f"grid's narrowest, {min(widths)})")

  bursts = flat["injection.mode"] == "bursts"
  gaps = grid.get("gap", (flat["injection.gap"],))
  gap_field = "grid.gap" if "gap" in grid else "injection.gap"
  if not bursts and len(gaps) > 1:
    raise ConfigError(f"config.{gap_field} = {gaps!r}: a gap only applies to "
                      "config.injection.mode = 'bursts'; allowed here: a single value")
  if bursts:
    steps, batch = flat["train.steps"], flat["train.batch_size"]
    _check(flat["injection.withhold_steps"] < steps, "injection.withhold_steps",
           flat["injection.withhold_steps"], f"an integer below train.steps = {steps}")
    for f in grid.get("rare_frequency", (flat["task.rare_frequency"],)):
      for g in gaps:
        try:
          retention.burst_size(f, g, batch, num_rare)
        except ValueError:
          _check(False, freq_field, f,
                 f"with injection bursts, rare_frequency x gap x train.batch_size must be a "
                 f"whole number of examples per rare task and burst, between 1 and "
                 f"train.batch_size / task.num_rare = {batch // num_rare}; with gap {g} it is "
                 f"{f * g * batch:.6g}")
  if flat["measure.trace_rare"]:
    _check(TASKS[flat["task.name"]].has_theory, "measure.trace_rare", True,
           f"False for task {flat['task.name']!r} (the per-step rare signal is the exact FVU of "
           "a family with closed-form theory: 'linear_mixture')")
    for a in grid.get("activation", (flat["model.activation"],)):
      field = "grid.activation" if "activation" in grid else "model.activation"
      _check(a == "identity", field, a,
             "'identity' when config.measure.trace_rare is on (the per-step rare signal is the "
             "exact FVU and feature capture of a linear encoder)")
