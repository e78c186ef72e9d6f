"""The config of the injection study (`lm_size_by_frequency`): a size x frequency x gap x task x
seed grid of decoders pretrained on one text source with novel tasks injected, every field, its
checks, and its resolution into one pretraining config per size.

Study files in `configs/` start from `base_config()`. The model, data, train and mesh fields are
the pretraining study's (`rare_tasks.lm.config`), except that the grid's sizes replace
model.preset and its seeds replace init_seeds; train.batch_size and train.learning_rate unset
take each size's ladder values.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from rare_tasks.core import config as checks
from rare_tasks.core.aliases import Aliases
from rare_tasks.core.config import ConfigError, check, is_int, is_real
from rare_tasks.lm import config as lm_config
from rare_tasks.lm import grid, injections, ladder, task_metrics, tasks

STUDY = "lm_size_by_frequency"
START_FROM = "rare_tasks.lm.grid_config.base_config()"
GRID_AXES = ("size", "frequency", "gap", "task", "seed", "steps")
NOT_IDENTITY = ("checkpoint_interval_s", "learned", "mechanism.effectivity_window",
                "mechanism.retention_lag", "log")
# Fields renamed since older work directories were written: their config.json is read in today's
# names, and a config that uses an old name is refused with its new one.
ALIASES = Aliases(studies={"lm_width_by_frequency": STUDY},
                  fields={"learned_accuracy": "learned.threshold"})


def base_config() -> ml_collections.ConfigDict:
  """Every field of the injection study, with a small CPU grid: the language models' shared
  sub-schemas (the model without a preset: the grid names the sizes; data, train, mesh) and the
  study's own grid, task, injection and learned criterion."""
  c = ml_collections.ConfigDict()
  c.study = STUDY
  c.model = lm_config.model_schema(preset=False)
  c.data, c.train = lm_config.data_schema(), lm_config.train_schema()
  c.mesh = lm_config.mesh_schema()
  c.update(lm_config.run_fields())
  # Cells: the product of the axes; per size, all cells (and a control member at frequency 0
  # per seed) train as one ensemble on the same text batches. The seed sets the model's
  # initialisation and the order of the injected instances.
  # steps: run lengths, each its own full warmup-cosine schedule and its own programs (the
  # data-scaling control); empty: train.steps alone.
  c.grid = ml_collections.ConfigDict(dict(
      size=("cpu_d16", "cpu_d64"), frequency=(0.002, 0.0005), gap=(1,),
      task=("comparison",), seed=(0,), steps=()))
  # The injected tasks: p symbols each (disjoint between tasks), their bijection and split by
  # seed; answer_tokens: T_CMP answers with two reserved tokens instead of the larger token;
  # jointly: every cell injects all of grid.task at once (one cell per frequency, gap, seed);
  # split: "ordered" halves the ordered pairs (a pair's mirror may sit on the other side),
  # "unordered" keeps each pair with its mirror.
  c.task = ml_collections.ConfigDict(dict(num_symbols=100, seed=0, answer_tokens=False,
                                          jointly=False, split="ordered"))
  # The frequency's unit, the schedule ("steady"; "bursts": every gap-th update carries gap
  # times the instances) and the updates before the first injection.
  c.injection = ml_collections.ConfigDict(dict(unit="per_token", schedule="steady",
                                               withhold_steps=0))
  # Each cell its own compiled program instead of one ensemble per size (the same results; for
  # a size whose ensemble does not fit, or with mesh.fsdp > 1, it is chosen anyway).
  c.mesh.one_program_per_cell = False
  # A cell has learned (generalised) a task when its train (test) score is at or above threshold,
  # the score (criterion) being "accuracy" (argmax over the vocabulary) or "choice_accuracy" (the
  # right answer above the others the task allows), averaged over the last `last_evals`
  # evaluations.
  c.learned = ml_collections.ConfigDict(dict(criterion="accuracy", threshold=0.9, last_evals=3))
  c.mechanism = mechanism_schema()
  return c


def mechanism_schema() -> ml_collections.ConfigDict:
  """Why a size keeps a task (docs/language_models.md, "The mechanism"), each measurement off by
  default:
    gradients: the decomposition of an update's gradient into its injected-task and
      ordinary-text parts against the task's own gradient, on the top_k first-layer MLP neurons
      (fractions of the MLP width, one support per fraction), at every evaluation and, under
      bursts, at every burst update and halfway between bursts (gradients.jsonl);
    probes: the tasks' order feature and Fourier modes in the residual stream at every
      evaluation, a frequency counting as a mode above fourier_factor times an even spread;
    retention: each task's loss on retention_instances train instances after every update
      (bursts with a withholding phase only), read per injection as its effectivity (the drop
      over the next effectivity_window updates; 0: until the next injection) and its
      retainability (the share of the drop still held retention_lag updates after the lowest
      point; 0: just before the next injection)."""
  return ml_collections.ConfigDict(dict(
      gradients=False, top_k=(0.1,), probes=False, fourier_factor=2.0, retention=False,
      retention_instances=64, effectivity_window=0, retention_lag=0))


def _distinct(test, what: str) -> checks.Check:
  def run(field: str, v: Any) -> None:
    values = list(v) if isinstance(v, (list, tuple)) else None
    check(values is not None and len(values) > 0 and all(test(x) for x in values)
          and len(set(values)) == len(values), field, v, f"a non-empty tuple of distinct {what}")
  return run


FIELD_CHECKS: dict[str, checks.Check] = {
    "study": checks.choice((STUDY,)),
    **lm_config.MODEL_CHECKS, **lm_config.DATA_CHECKS, **lm_config.TRAIN_CHECKS,
    **lm_config.MESH_CHECKS, **lm_config.RUN_CHECKS,
    "grid.size": _distinct(lambda s: s in ladder.PRESETS,
                           f"ladder presets ({', '.join(ladder.PRESETS)})"),
    "grid.frequency": _distinct(lambda f: is_real(f) and 0 < f < 1,
                                "numbers in (0, 1) (the control at frequency 0 is added to "
                                "every size)"),
    "grid.gap": _distinct(lambda g: is_int(g) and g >= 1, "integers >= 1 (updates between "
                          "bursts)"),
    "grid.task": _distinct(lambda t: t in tasks.NAMES, f"tasks from {list(tasks.NAMES)}"),
    "grid.seed": _distinct(lambda s: is_int(s) and s >= 0, "integers >= 0"),
    "grid.steps": checks.rule(
        lambda v: isinstance(v, (list, tuple)) and (len(v) == 0 or (
            all(is_int(x) and x >= 1 for x in v) and len(set(v)) == len(v))),
        "an empty tuple (train.steps alone) or a tuple of distinct integers >= 1 (run lengths)"),
    "task.num_symbols": checks.int_at_least(2),
    "task.seed": checks.nonneg_int,
    "task.answer_tokens": checks.boolean,
    "task.jointly": checks.boolean,
    "task.split": checks.choice(tasks.SPLITS),
    "injection.unit": checks.choice(injections.UNITS),
    "injection.schedule": checks.choice(injections.SCHEDULES),
    "injection.withhold_steps": checks.nonneg_int,
    "mesh.one_program_per_cell": checks.boolean,
    "learned.criterion": checks.choice(task_metrics.CRITERIA),
    "learned.last_evals": checks.int_at_least(1),
    "learned.threshold": checks.rule(lambda v: is_real(v) and 0 < v <= 1, "a number in (0, 1]"),
    "mechanism.gradients": checks.boolean,
    "mechanism.top_k": _distinct(lambda f: is_real(f) and 0 < f <= 1,
                                 "fractions in (0, 1] of the MLP width"),
    "mechanism.probes": checks.boolean,
    "mechanism.fourier_factor": checks.positive_real,
    "mechanism.retention": checks.boolean,
    "mechanism.retention_instances": checks.positive_int,
    "mechanism.effectivity_window": checks.nonneg_int,
    "mechanism.retention_lag": checks.nonneg_int,
}


def resolve(config: ml_collections.ConfigDict, platform: str
            ) -> tuple[ml_collections.ConfigDict, dict[str, ml_collections.ConfigDict]]:
  """The checked config, and per size of the grid its resolved pretraining config (the size's
  preset, batch and learning rate, the grid's seeds as init_seeds).

  Raises ConfigError, naming the field, for anything not allowed.
  """
  checks.check_fields(config, FIELD_CHECKS, start_from=START_FROM, aliases=ALIASES)
  c = ml_collections.ConfigDict(config.to_dict())
  g = c.grid
  check(c.injection.schedule == "bursts" or tuple(g.gap) == (1,), "grid.gap", g.gap,
        "(1,) with injection.schedule = 'steady' (gaps need 'bursts')")
  shortest = min(grid.lengths(c))
  _check_mechanism(c, shortest)
  check(c.injection.withhold_steps < shortest, "injection.withhold_steps",
        c.injection.withhold_steps, f"an integer below the shortest run length, {shortest} steps")
  names = tuple(g.task)
  tasks.check_num_symbols(c.task.num_symbols, names, c.data.vocab_size, c.task.answer_tokens)
  sizes = {size: lm_config.resolve(size_config(c, size), platform) for size in g.size}
  for steps in g.steps:  # every length's schedule checked (its warmup fits, ...)
    check(c.train.warmup_steps < steps, "grid.steps", tuple(g.steps),
          f"run lengths above train.warmup_steps = {c.train.warmup_steps} (each length is a "
          "whole warmup-cosine schedule)")
    try:
      lm_config.resolve(size_config(c, g.size[0], steps), platform)
    except ConfigError as e:
      raise ConfigError(f"config.grid.steps = {tuple(g.steps)!r}: allowed: run lengths each "
                        f"of which the training fields fit; at {steps} steps: {e}") from None
  per_cell = len(names) if c.task.jointly else 1
  for s in sizes.values():
    injections.check_rows(g.frequency, g.gap, c.injection.unit, s.train.batch_size,
                          c.data.seq_len, per_cell)
  return c, sizes


def _check_mechanism(c: ml_collections.ConfigDict, shortest: int) -> None:
  """Retention needs bursts after a withholding phase that holds at least one burst-free window
  of the largest gap (the baseline), and an injection before the shortest run ends."""
  if not c.mechanism.retention:
    return
  check(c.injection.schedule == "bursts" and max(c.grid.gap) >= 2, "mechanism.retention", True,
        f"False unless injection.schedule = 'bursts' with a grid.gap >= 2 (now "
        f"{c.injection.schedule!r}, gaps {tuple(c.grid.gap)}): retention reads the task loss "
        "after each burst")
  gap, withhold = max(c.grid.gap), c.injection.withhold_steps
  check(withhold >= gap, "injection.withhold_steps", withhold,
        f"at least the largest grid.gap ({gap}) with mechanism.retention: the baseline reads "
        "burst-free windows of the withholding phase")
  check(withhold + gap <= shortest, "injection.withhold_steps", withhold,
        f"at most the shortest run ({shortest} steps) minus the largest gap ({gap}) with "
        "mechanism.retention: a burst's window must fit in the run")


def size_config(c: ml_collections.ConfigDict, size: str,
                steps: int | None = None) -> ml_collections.ConfigDict:
  """The pretraining config of one size of the grid (unresolved): the size as model.preset,
  the grid's seeds as init_seeds, and every field of the shared sub-schemas as the study has
  them (a field added to one reaches every size without being named here); `steps`, when given,
  replaces train.steps (a run length of grid.steps)."""
  p = lm_config.base_config()
  p.init_seeds = tuple(c.grid.seed)
  p.model.preset = size
  for section, schema in (("model", lm_config.model_schema(preset=False)),
                          ("data", lm_config.data_schema()), ("train", lm_config.train_schema()),
                          ("mesh", lm_config.mesh_schema())):
    for field in schema:
      p[section][field] = c[section][field]
  for field in lm_config.run_fields():
    p[field] = c[field]
  if steps is not None:
    p.train.steps = steps
  return p
