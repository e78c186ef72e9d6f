"""The config of a synthetic study: every field, its default, and the checks run before any compute.

Study files in `configs/` start from `base_config()` and change values; a field that is not in
the schema (a typo) is refused with the closest known names.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from rare_tasks import injection
from rare_tasks.core import config as checks
from rare_tasks.core import rng
from rare_tasks.core.aliases import Aliases
from rare_tasks.core.config import ConfigError, check, is_int, is_real
from rare_tasks.core.optimizers import OPTIMIZERS, SCHEDULES
from rare_tasks.synthetic.models import ACTIVATIONS, MODELS
from rare_tasks.synthetic.tasks import TASKS
from rare_tasks.synthetic.tasks.linear_mixture import BASES, SPECTRUM_NORMALIZATIONS

# Grid axis -> the config field each of its values overrides.
GRID_AXES = {
    "width": "model.width",
    "activation": "model.activation",
    "num_hidden_layers": "model.num_hidden_layers",
    "seed": "seed",
    "beta": "task.beta",
    "frequency": "injection.frequency",
    "common_exponent": "task.common_exponent",
    "learning_rate": "train.learning_rate",
    "gap": "injection.gap",
}

# A grid axis's name in a cell's values, in metrics.jsonl records and in every table, where it
# differs from the axis's own: the frequency keeps the column name it had before it was renamed.
RECORDED_AS = {"frequency": "rare_frequency"}
# Every grid axis as cells and records name it, in GRID_AXES order.
CELL_VALUES = tuple(RECORDED_AS.get(axis, axis) for axis in GRID_AXES)
# The unit of injection.frequency: the probability that an example belongs to a rare task.
UNITS = ("per_example",)
# What counts a task as learned: its headline loss (FVU, or bits) at or below the threshold.
CRITERIA = ("loss",)

STUDIES = ("grid", "mixture_design")
# Fields that do not change what is trained (only how often it is saved, or the report drawn
# from it): a resume may change them, and config.json is then rewritten with the new values.
NOT_IDENTITY = ("checkpoint_interval_s", "scaling", "design.target_frequencies", "log")
START_FROM = "rare_tasks.synthetic.config.base_config()"
# Fields and values renamed since older work directories were written: their config.json is read
# in today's names, and a config that uses an old name is refused with its new one.
ALIASES = Aliases(
    fields={"task.rare_frequency": "injection.frequency", "grid.rare_frequency": "grid.frequency",
            "injection.mode": "injection.schedule", "learned_fvu": "learned.threshold"},
    values={"injection.schedule": {"mixture": "steady"}},
    # Runs written before config.train.rng existed drew their numbers with threefry.
    absent={"train.rng": "threefry2x32"})


def base_config() -> ml_collections.ConfigDict:
  """Every field a synthetic study has, with small defaults that double as a quick test setting."""
  c = ml_collections.ConfigDict()
  # "grid": train every cell of the grid. "mixture_design": per grid width (and seed), search
  # for the smallest rare frequency that is learned (rare_tasks.synthetic.mixture_design; the
  # search sets the frequencies, so grid.frequency stays unset).
  c.study = "grid"
  c.seed = 0
  # Not type-safe: task.beta holds one number or one per task (validate() checks the values).
  # Task family fields: name, num_tasks, num_rare and common_exponent are read by every family;
  # block_size, beta, basis, basis_seed and spectrum_normalization by linear_mixture; num_bits,
  # parity_bits and secret_seed by sparse_parity.
  c.task = ml_collections.ConfigDict(dict(
      name="linear_mixture", num_tasks=16, block_size=8, num_rare=1, common_exponent=1.0,
      beta=1.0, basis="rotation", basis_seed=0, spectrum_normalization="top", num_bits=32,
      parity_bits=3, secret_seed=0), type_safe=False)
  c.model = ml_collections.ConfigDict(dict(
      name="encoder_heads", width=32, activation="identity", num_hidden_layers=0))
  c.train = ml_collections.ConfigDict(dict(
      steps=2000, batch_size=256, learning_rate=3e-3, optimizer="adam", schedule="constant",
      warmup_steps=0, final_lr_fraction=0.0, momentum=0.0, rng="philox4x32"))
  # train.rng: the generator of every random number (rare_tasks.core.rng.GENERATORS); a run
  # written before the field existed drew with "threefry2x32" and resumes with it.
  # How the rare tasks reach the batches. frequency: each rare task's long-run frequency, in
  # unit "per_example" (the probability that an example belongs to it). schedule: "steady"
  # (i.i.d. from the mixture every step) or "bursts" (withheld for withhold_steps updates, then
  # frequency * gap * batch_size rare examples every gap-th update, so that the long-run
  # frequency is exactly frequency).
  c.injection = ml_collections.ConfigDict(dict(
      schedule="steady", frequency=0.01, unit="per_example", gap=1, withhold_steps=0))
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
  c.grid.frequency = (0.01,)
  c.grid.seed = (0,)
  c.eval_every = 500
  c.eval_samples = 4096
  # A task counts as learned when its headline loss (criterion "loss") is at or below
  # threshold: the FVU for linear_mixture, the cross-entropy in bits (1 = chance) for
  # sparse_parity.
  c.learned = ml_collections.ConfigDict(dict(criterion="loss", threshold=0.8))
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
  # Scaling analysis after a grid run (rare_tasks.synthetic.report.scaling): fit
  # L(N) = L0 + A N^-alpha over the width grid with bootstrap_resamples resamples of the seeds;
  # the small and large widths (0: the grid's narrowest and widest) and the epsilon of the
  # paper's figure 1.
  c.scaling = ml_collections.ConfigDict(dict(
      enabled=False, small_width=0, large_width=0, epsilon=0.05, bootstrap_resamples=1000))
  # Checkpoints are written at evaluation steps, at most this often (and always at the end).
  c.checkpoint_interval_s = 30.0
  # tensorboard: every cell's headline measurements as TensorBoard scalars at each evaluation,
  # in <workdir>/tensorboard/ (rare_tasks.core.tensorboard).
  c.log = ml_collections.ConfigDict(dict(tensorboard=False))
  return c


def linear_study_config() -> ml_collections.ConfigDict:
  """base_config() in the studies' linear setting (docs/science.md, "The synthetic setting"):
  K = 16 tasks of m = 8 features, one rare, common tasks at power-law exponent 1.5, spectra
  j^-1, batch 256."""
  c = base_config()
  c.task.num_tasks = 16
  c.task.block_size = 8
  c.task.num_rare = 1
  c.task.common_exponent = 1.5
  c.task.beta = 1.0
  c.train.batch_size = 256
  return c


def _target_frequencies(field: str, v: Any) -> None:
  check(v is None or (isinstance(v, (list, tuple)) and len(v) > 0
                      and all(is_real(f) and 0 < f < 1 for f in v)), field, v,
        "None, or a non-empty list of frequencies in (0, 1)")


FIELD_CHECKS: dict[str, checks.Check] = {
    "study": checks.choice(STUDIES),
    "seed": checks.nonneg_int,
    "task.name": checks.choice(TASKS),  # read when checked: families registered later count
    "task.num_tasks": checks.int_at_least(2),
    "task.block_size": checks.positive_int,
    "task.num_rare": checks.positive_int,
    "task.common_exponent": checks.real,
    "task.beta": checks.one_or_per_task(lambda b: is_real(b) and b >= 0, "a number >= 0"),
    "task.basis": checks.choice(BASES),
    "task.basis_seed": checks.nonneg_int,
    "task.spectrum_normalization": checks.choice(SPECTRUM_NORMALIZATIONS),
    "task.num_bits": checks.positive_int,
    "task.parity_bits": checks.one_or_per_task(lambda k: is_int(k) and k >= 1,
                                               "an integer >= 1"),
    "task.secret_seed": checks.nonneg_int,
    "model.name": checks.choice(MODELS),
    "model.width": checks.positive_int,
    "model.activation": checks.choice(tuple(ACTIVATIONS)),
    "model.num_hidden_layers": checks.nonneg_int,
    "train.steps": checks.positive_int,
    "train.batch_size": checks.positive_int,
    "train.learning_rate": checks.positive_real,
    "train.optimizer": checks.choice(OPTIMIZERS),
    "train.rng": checks.choice(rng.GENERATORS),
    "train.schedule": checks.choice(SCHEDULES),
    "train.warmup_steps": checks.nonneg_int,
    "train.final_lr_fraction": checks.fraction,
    "train.momentum": checks.rule(lambda v: is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
    "injection.schedule": checks.choice(injection.SCHEDULES),
    "injection.frequency": checks.open_unit,
    "injection.unit": checks.choice(UNITS),
    "injection.gap": checks.positive_int,
    "injection.withhold_steps": checks.nonneg_int,
    "measure.allocation": checks.boolean,
    "measure.interference": checks.boolean,
    "measure.interference_samples": checks.positive_int,
    "measure.trace_rare": checks.boolean,
    "design.num_candidates": checks.int_at_least(2),
    "design.bracket_factor": checks.rule(lambda v: is_real(v) and v > 1, "a number > 1"),
    "design.refine_rounds": checks.nonneg_int,
    "design.max_expansions": checks.nonneg_int,
    "design.min_frequency": checks.open_unit,
    "design.max_frequency": checks.open_unit,
    "design.initial_frequency": checks.open_unit,
    "design.target_frequencies": _target_frequencies,
    "scaling.enabled": checks.boolean,
    "scaling.small_width": checks.nonneg_int,
    "scaling.large_width": checks.nonneg_int,
    "scaling.epsilon": checks.nonneg_real,
    "scaling.bootstrap_resamples": checks.positive_int,
    "eval_every": checks.positive_int,
    "eval_samples": checks.positive_int,
    "learned.criterion": checks.choice(CRITERIA),
    "learned.threshold": checks.positive_real,
    "checkpoint_interval_s": checks.nonneg_real,
    "log.tensorboard": checks.boolean,
}


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


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for the first field that is unknown, missing or out of range."""
  flat = checks.check_fields(config, FIELD_CHECKS, leaves=("grid",), start_from=START_FROM,
                             aliases=ALIASES)
  grid = grid_values(config)
  _check_grid(grid, flat["grid"])
  _check_mixture(flat, grid)
  _check_family(flat, grid)
  if flat["study"] == "mixture_design":
    _check_design(flat, grid)
  if flat["scaling.enabled"]:
    _check_scaling(flat, grid)
  _check_injection(flat, grid)
  if flat["measure.trace_rare"]:
    _check_trace(flat, grid)


def _swept(flat: dict[str, Any], grid: dict[str, tuple], axis: str) -> tuple[str, tuple]:
  """(field to name in a message, every value a cell can take) of a grid axis."""
  if axis in grid:
    return f"grid.{axis}", grid[axis]
  return GRID_AXES[axis], (flat[GRID_AXES[axis]],)


def _check_grid(grid: dict[str, tuple], declared: dict[str, Any]) -> None:
  """The set axes' values; `declared`: every axis the config names, set or not (an old name
  is refused even when unset)."""
  for axis in declared:
    if axis not in GRID_AXES and (new := ALIASES.renamed(f"grid.{axis}")) is not None:
      raise ConfigError(f"config.grid.{axis} was renamed config.{new}")
  for axis, values in grid.items():
    if axis not in GRID_AXES:
      raise ConfigError(f"config.grid.{axis} is not a grid axis (allowed: {sorted(GRID_AXES)})"
                        + checks.close_names(axis, list(GRID_AXES), "config.grid."))
    check(len(values) > 0, f"grid.{axis}", values, "a non-empty list of values")
    check(len(set(map(repr, values))) == len(values), f"grid.{axis}", values,
          "a list without repeated values")
    for i, v in enumerate(values):
      FIELD_CHECKS[GRID_AXES[axis]](f"grid.{axis}[{i}]", v)


def _check_mixture(flat: dict[str, Any], grid: dict[str, tuple]) -> None:
  """Checks on every value the grid can combine: the mixture and the evaluation batch."""
  num_tasks, num_rare = flat["task.num_tasks"], flat["task.num_rare"]
  check(num_rare < num_tasks, "task.num_rare", num_rare,
        f"an integer in [1, task.num_tasks - 1] = [1, {num_tasks - 1}]")
  field, frequencies = _swept(flat, grid, "frequency")
  for f in frequencies:
    check(num_rare * f < 1, field, f,
          f"a frequency below 1 / task.num_rare = {1 / num_rare:.4g}, so that the "
          f"{num_rare} rare task(s) leave probability to the {num_tasks - num_rare} common ones")
  field, betas = _swept(flat, grid, "beta")
  for b in betas:
    if isinstance(b, (list, tuple)):
      check(len(b) == num_tasks, field, b,
            f"one number, or exactly task.num_tasks = {num_tasks} numbers")
  check(flat["eval_samples"] >= num_tasks, "eval_samples", flat["eval_samples"],
        f"at least task.num_tasks = {num_tasks} (the evaluation batch holds every task)")


def _check_family(flat: dict[str, Any], grid: dict[str, tuple]) -> None:
  """Checks that depend on the task family: its model, and sparse parity's bit counts."""
  name = flat["task.name"]
  models = TASKS[name].models
  check(flat["model.name"] in models, "model.name", flat["model.name"],
        f"one of {list(models)} for task {name!r}")
  if name != "sparse_parity":
    return
  check("beta" not in grid, "grid.beta", grid.get("beta"),
        "unset for sparse_parity (its complexity is config.task.parity_bits)")
  ks = flat["task.parity_bits"]
  num_tasks, num_bits = flat["task.num_tasks"], flat["task.num_bits"]
  if isinstance(ks, (list, tuple)):
    check(len(ks) == num_tasks, "task.parity_bits", ks,
          f"one integer, or exactly task.num_tasks = {num_tasks} integers")
  for k in (ks if isinstance(ks, (list, tuple)) else [ks]):
    check(k <= num_bits, "task.parity_bits", ks,
          f"integers <= task.num_bits = {num_bits} (a secret set is k distinct bits)")


def _check_design(flat: dict[str, Any], grid: dict[str, tuple]) -> None:
  """A mixture design searches the rare frequency per width and seed, nothing else."""
  for axis in grid:
    check(axis in ("width", "seed"), f"grid.{axis}", grid[axis],
          "unset for study 'mixture_design' (it sweeps grid.width and grid.seed, and searches "
          "the rare frequency itself)")
  lo, hi, num_rare = (flat["design.min_frequency"], flat["design.max_frequency"],
                      flat["task.num_rare"])
  check(lo < hi, "design.min_frequency", lo, f"a frequency below design.max_frequency = {hi}")
  check(num_rare * hi < 1, "design.max_frequency", hi,
        f"a frequency below 1 / task.num_rare = {1 / num_rare:.4g}")
  check(flat["injection.schedule"] == "steady", "injection.schedule",
        flat["injection.schedule"], "'steady' for study 'mixture_design'")


def _check_scaling(flat: dict[str, Any], grid: dict[str, tuple]) -> None:
  _, widths = _swept(flat, grid, "width")
  check(len(widths) >= 3, "grid.width", widths,
        "at least 3 widths when config.scaling.enabled (a power law in width has 3 parameters)")
  check(flat["study"] == "grid", "scaling.enabled", True,
        f"False for study {flat['study']!r} (scaling fits need a grid run)")
  small = flat["scaling.small_width"] or min(widths)
  large = flat["scaling.large_width"] or max(widths)
  check(small <= large, "scaling.small_width", flat["scaling.small_width"],
        f"a width <= the large width {large} (config.scaling.large_width; 0 means the "
        f"grid's narrowest, {min(widths)})")


def _check_injection(flat: dict[str, Any], grid: dict[str, tuple]) -> None:
  """A gap needs bursts; bursts need a whole number of rare examples that fits in a batch."""
  gap_field, gaps = _swept(flat, grid, "gap")
  if flat["injection.schedule"] != "bursts":
    if len(gaps) > 1:
      raise ConfigError(f"config.{gap_field} = {gaps!r}: a gap only applies to "
                        "config.injection.schedule = 'bursts'; allowed here: a single value")
    return
  steps, batch, num_rare = flat["train.steps"], flat["train.batch_size"], flat["task.num_rare"]
  check(flat["injection.withhold_steps"] < steps, "injection.withhold_steps",
        flat["injection.withhold_steps"], f"an integer below train.steps = {steps}")
  freq_field, frequencies = _swept(flat, grid, "frequency")
  for f in frequencies:
    for g in gaps:
      try:
        injection.burst_size(f, g, batch, num_rare)
      except ValueError:
        check(False, freq_field, f,
              f"with injection bursts, frequency x gap x train.batch_size must be a "
              f"whole number of examples per rare task and burst, between 1 and "
              f"train.batch_size / task.num_rare = {batch // num_rare}; with gap {g} it is "
              f"{f * g * batch:.6g}")


def _check_trace(flat: dict[str, Any], grid: dict[str, tuple]) -> None:
  """The per-step rare signal is the exact FVU and capture of a linear encoder."""
  family = TASKS[flat["task.name"]]
  check(family.Theory is not None, "measure.trace_rare", True,
        f"False for task {flat['task.name']!r} (the per-step rare signal is the exact FVU of "
        "a family with closed-form theory: 'linear_mixture')")
  field, activations = _swept(flat, grid, "activation")
  for a in activations:
    check(a == "identity", field, a,
          "'identity' when config.measure.trace_rare is on (the per-step rare signal is the "
          "exact FVU and feature capture of a linear encoder)")
