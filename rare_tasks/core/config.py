"""Config checking shared by every study: typed field checks, typo hints and presets.

A track declares its fields as a table {dotted field: check}; `check_fields` refuses a field that
is unknown (with the closest known names), missing or out of range, before any compute. Every
refusal is a ConfigError whose one-line message names the field, the value and what is allowed;
a field or value the track renamed (its `Aliases`) is refused with its new name.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import ml_collections

from rare_tasks.core.aliases import NO_ALIASES, Aliases

# check(field, value) raises ConfigError unless the value is allowed.
Check = Callable[[str, Any], None]


class ConfigError(ValueError):
  """A config value that is not allowed; the message names the field, the value and the rule."""


def is_int(v: Any) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_real(v: Any) -> bool:
  """A finite real number (not a bool)."""
  return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def check(ok: bool, field: str, value: Any, allowed: str) -> None:
  """Raises ConfigError naming `field`, `value` and what is `allowed` unless `ok`."""
  if not ok:
    raise ConfigError(f"config.{field} = {value!r}: allowed: {allowed}")


def rule(test: Callable[[Any], bool], allowed: str) -> Check:
  """A check from a predicate on the value and the words that say what it allows."""
  def run(field: str, v: Any) -> None:
    check(test(v), field, v, allowed)
  return run


positive_int = rule(lambda v: is_int(v) and v > 0, "an integer > 0")
nonneg_int = rule(lambda v: is_int(v) and v >= 0, "an integer >= 0")
positive_real = rule(lambda v: is_real(v) and v > 0, "a finite number > 0")
nonneg_real = rule(lambda v: is_real(v) and v >= 0, "a number >= 0")
real = rule(is_real, "a finite number")
fraction = rule(lambda v: is_real(v) and 0 <= v <= 1, "a number in [0, 1]")
open_unit = rule(lambda v: is_real(v) and 0 < v < 1, "a number in (0, 1)")
boolean = rule(lambda v: isinstance(v, bool), "True or False")


def int_at_least(low: int) -> Check:
  return rule(lambda v: is_int(v) and v >= low, f"an integer >= {low}")


def choice(options: Collection[str]) -> Check:
  """One of `options`; read when checked, so a registry filled in later counts."""
  def run(field: str, v: Any) -> None:
    check(v in options, field, v, f"one of {sorted(options)}")
  return run


def one_or_per_task(test: Callable[[Any], bool], what: str) -> Check:
  """One value passing `test`, or a non-empty list of them (one per task)."""
  def run(field: str, v: Any) -> None:
    values = list(v) if isinstance(v, (list, tuple)) else [v]
    check(len(values) > 0 and all(test(x) for x in values), field, v,
          f"{what}, or one {what.removeprefix('a ').removeprefix('an ')} per task")
  return run


def flatten(config: Mapping[str, Any], leaves: Collection[str] = (),
            prefix: str = "") -> dict[str, Any]:
  """{dotted field: value} of a nested config; the sections named in `leaves` stay whole."""
  out = {}
  for k, v in config.items():
    path = f"{prefix}{k}"
    if isinstance(v, (dict, ml_collections.ConfigDict)) and path not in leaves:
      out.update(flatten(v, leaves, path + "."))
    else:
      out[path] = v
  return out


def close_names(name: str, known: Sequence[str], prefix: str = "config.") -> str:
  """'; did you mean config.a, config.b?' for the known names closest to `name`, or ''."""
  close = difflib.get_close_matches(name, list(known), n=3)
  return f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""


def unknown_field(field: str, known: Sequence[str],
                  aliases: Aliases = NO_ALIASES) -> ConfigError:
  """The refusal of a field the config does not have: its new name when `aliases` says it was
  renamed, else the closest of the `known` names."""
  new = aliases.renamed(field)
  if new is not None:
    return ConfigError(f"config.{field} was renamed config.{new}")
  return ConfigError(f"config.{field} is not a known field{close_names(field, known)}")


def check_fields(config: ml_collections.ConfigDict, checks: Mapping[str, Check],
                 leaves: Collection[str] = (), start_from: str = "base_config()",
                 aliases: Aliases = NO_ALIASES) -> dict:
  """Checks every field of `config` against the table `checks`; returns the flat config.

  Fields in `leaves` (whole sections, such as a grid) are only required to exist; the caller
  checks their contents. Raises ConfigError for the first unknown, missing or refused field;
  a field, or a refused value, that `aliases` renamed is refused with its new name.
  """
  flat = flatten(config.to_dict(), leaves)
  known = list(checks) + list(leaves)
  for field in flat:
    if field not in known:
      raise unknown_field(field, known, aliases)
  for field in checks:
    if field not in flat:
      raise ConfigError(f"config.{field} is missing; start study configs from {start_from}")
  for field, run in checks.items():
    try:
      run(field, flat[field])
    except ConfigError:
      new = aliases.new_value(field, flat[field])
      if new is flat[field]:
        raise
      raise ConfigError(f"config.{field} = {flat[field]!r} was renamed {new!r}") from None
  return flat


def study_preset(study: str, preset: str, presets: Sequence[str]) -> str:
  """The preset a study file was asked for ("" is "default"); ConfigError naming the allowed."""
  preset = preset or "default"
  if preset not in presets:
    raise ConfigError(f"configs/{study}.py:{preset}: unknown preset; allowed: {tuple(presets)}")
  return preset
