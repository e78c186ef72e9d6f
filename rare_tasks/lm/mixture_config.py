"""The config of the language models' mixture design (`lm_mixture_design`): per task, size and
run length, the smallest injection frequency at which the task is learned, searched in rounds
instead of read off a grid.

It is the injection study's config (`rare_tasks.lm.grid_config`) without grid.frequency, which
is searched, and without config.mechanism, plus `config.design`: the search's range, its first
guess and how it places candidates. Every round of the search is trained as an injection study
whose grid.frequency holds that round's candidates (`round_config`), so the two studies share
every field's meaning and check.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import ml_collections

from rare_tasks.core import config as checks
from rare_tasks.core.config import ConfigError, check, is_real
from rare_tasks.lm import grid_config

STUDY = "lm_mixture_design"
START_FROM = "rare_tasks.lm.mixture_config.base_config()"
# Fields that change neither what is trained nor which candidates the search proposes.
NOT_IDENTITY = ("checkpoint_interval_s", "design.target_frequencies", "log")
_NOT_HERE = ("grid.frequency", "mechanism")


def design_schema() -> ml_collections.ConfigDict:
  """The search (rare_tasks.analysis.frequency_search), its frequencies in injection.unit:
    min_frequency, max_frequency: the range it may propose; a size that learns nothing at
      max_frequency is reported as never learning the task within it;
    initial_frequency: the first round's centre for every size, unless centers_from names the
      work directory of a finished injection study (lm_size_by_frequency) of the same task:
      then each size's threshold there (at the same run length) is its centre;
    num_candidates: frequencies per size and round (each trained at every seed);
    bracket_factor: the first round spans centre / factor .. centre * factor on a log scale;
    max_expansions, refine_rounds: rounds that widen a bracket that missed, and that refine
      one that holds;
    target_frequencies: the frequencies the inverse table (smallest size that learns them) is
      given for; None: spread over the measured range."""
  return ml_collections.ConfigDict(dict(
      min_frequency=0.005, max_frequency=0.8, initial_frequency=0.07, num_candidates=5,
      bracket_factor=4.0, max_expansions=2, refine_rounds=1,
      target_frequencies=ml_collections.config_dict.placeholder(tuple), centers_from=""))


def base_config() -> ml_collections.ConfigDict:
  """Every field of the mixture design: the injection study's (but grid.frequency and
  config.mechanism) and config.design."""
  c = grid_config.base_config()
  c.study = STUDY
  c.grid = ml_collections.ConfigDict({k: v for k, v in c.grid.items() if k != "frequency"})
  del c["mechanism"]
  c.design = design_schema()
  return c


def _targets(field: str, v: Any) -> None:
  check(v is None or (isinstance(v, (list, tuple)) and len(v) > 0
                      and all(is_real(f) and 0 < f < 1 for f in v)), field, v,
        "None, or a non-empty tuple of frequencies in (0, 1)")


FIELD_CHECKS: dict[str, checks.Check] = {
    **{k: v for k, v in grid_config.FIELD_CHECKS.items()
       if not any(k == n or k.startswith(n + ".") for n in _NOT_HERE)},
    "study": checks.choice((STUDY,)),
    "design.min_frequency": checks.open_unit,
    "design.max_frequency": checks.open_unit,
    "design.initial_frequency": checks.open_unit,
    "design.num_candidates": checks.int_at_least(2),
    "design.bracket_factor": checks.rule(lambda v: is_real(v) and v > 1, "a number > 1"),
    "design.max_expansions": checks.nonneg_int,
    "design.refine_rounds": checks.nonneg_int,
    "design.target_frequencies": _targets,
    "design.centers_from": checks.rule(lambda v: isinstance(v, str),
                                       "a string: '' or the work directory of a finished "
                                       "lm_size_by_frequency run"),
}


def round_config(c: ml_collections.ConfigDict,
                 frequencies: tuple[float, ...]) -> ml_collections.ConfigDict:
  """The injection study's config of one round: every field of the design but config.design,
  grid.frequency the round's candidates, the mechanism measurements off."""
  r = grid_config.base_config()
  for section, value in c.items():
    if section == "design":
      continue
    if isinstance(value, ml_collections.ConfigDict):
      for field, v in value.items():
        r[section][field] = v
    else:
      r[section] = value
  r.study = grid_config.STUDY
  r.grid.frequency = tuple(float(f) for f in frequencies)
  return r


def resolve(config: ml_collections.ConfigDict, platform: str
            ) -> tuple[ml_collections.ConfigDict, dict[str, ml_collections.ConfigDict]]:
  """The checked config, and per size its resolved pretraining config, as
  grid_config.resolve gives them; ConfigError, naming the field, for anything not allowed."""
  checks.check_fields(config, FIELD_CHECKS, start_from=START_FROM)
  c = ml_collections.ConfigDict(config.to_dict())
  d = c.design
  check(d.min_frequency < d.max_frequency, "design.min_frequency", d.min_frequency,
        f"a frequency below design.max_frequency = {d.max_frequency}")
  check(not c.task.jointly, "task.jointly", True,
        "False for lm_mixture_design: it searches each task's frequency alone")
  check(len(c.grid.gap) == 1, "grid.gap", tuple(c.grid.gap),
        "one gap for lm_mixture_design: it searches the frequency at a fixed schedule")
  if d.centers_from:
    check(Path(d.centers_from).is_dir(), "design.centers_from", d.centers_from,
          "'' or an existing work directory of a finished lm_size_by_frequency run")
  try:
    _, sizes = grid_config.resolve(round_config(c, (d.max_frequency,)), platform)
  except ConfigError as e:
    if not str(e).startswith("config.grid.frequency"):
      raise
    highest = _highest(c)
    raise ConfigError(f"config.design.max_frequency = {d.max_frequency!r}: allowed: at most "
                      f"{highest:.6g} {c.injection.unit} at this batch (one instance per row "
                      "of each burst)") from None
  return c, sizes


def _highest(c: ml_collections.ConfigDict) -> float:
  """The largest frequency whose injections fit every size's rows (for the error message)."""
  low, high = 0.0, 1.0
  for _ in range(40):
    mid = (low + high) / 2
    try:
      grid_config.resolve(round_config(c, (mid,)), "cpu")
      low = mid
    except ConfigError:
      high = mid
  return low if low > 0 else math.nan

