"""Command-line flags whose every mistake is one line: a config file flag and its overrides.

absl and ml_collections report a misspelt override, a missing config file or preset, and a
value of the wrong type as tracebacks or as errors that do not name the field. `parse_flags`
checks the config file and every `--config.<field>` against the loaded config first, then lets
absl parse, and turns whatever is still refused into a ConfigError naming the flag, the value
and what is allowed.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ml_collections
from absl import flags

from rare_tasks.core.aliases import NO_ALIASES, Aliases
from rare_tasks.core.config import ConfigError, flatten, unknown_field

_ILLEGAL = re.compile(r"flag --(?P<name>[^=\s]+)=(?P<value>.*?): (?P<why>.*)", re.DOTALL)


def parse_flags(argv: Sequence[str], flag_name: str = "config",
                flag_values: flags.FlagValues = flags.FLAGS,
                default: str | None = None,
                aliases: Callable[[Any], Aliases] | None = None) -> list[str]:
  """Parses `argv` into `flag_values` (as absl's app.run does); returns the arguments left.

  `default`: the config file when argv gives none. (Define the config flag without a default:
  config_flags loads a default, and applies the overrides, when the flag is defined, before
  any error can be caught.) Raises ConfigError, with a one-line message, for a config file that
  does not exist or fails to load, an unknown preset, an override of a field the config does
  not have (with the closest names, or its new name when `aliases`, given the loaded config,
  says it was renamed), a value of the wrong type, and any other flag absl refuses.
  """
  argv = list(argv)
  path = _config_argument(argv[1:], flag_name)
  if path is None and default is not None:
    path = default
    argv.insert(1, f"--{flag_name}={default}")
  config = None
  if path is not None:
    config = load_config_file(path, flag_name)
    for field, value in _overrides(argv[1:], flag_name):
      _check_override(config, field, value, flag_name, aliases)
  try:
    return flag_values(argv)
  except flags.Error as e:
    raise ConfigError(_flag_message(str(e), flag_name, config)) from None


def load_config_file(argument: str, flag_name: str = "config") -> Any:
  """The config of `path[:preset]`, as config_flags loads it: `get_config(preset)`."""
  path, _, preset = argument.partition(":")
  file = Path(path)
  if not file.is_file():
    folder = file if file.is_dir() else file.parent
    known = sorted(str(p) for p in folder.glob("*.py")) if folder.is_dir() else []
    hint = f"; config files in {folder}: {', '.join(known)}" if known else ""
    what = "a folder, not a config file" if file.is_dir() else "no such config file"
    raise ConfigError(f"--{flag_name}={argument}: {what}{hint}")
  spec = importlib.util.spec_from_file_location(f"_{flag_name}_file", file)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
      raise ConfigError(f"--{flag_name}={argument}: {path} defines no get_config()")
    return module.get_config(preset) if preset else module.get_config()
  except ConfigError:
    raise
  except Exception as e:  # the config file's own bug: one line, where it is
    raise ConfigError(f"--{flag_name}={argument}: {type(e).__name__}: {e}") from None


def _config_argument(args: list[str], flag_name: str) -> str | None:
  """The value of --<flag_name> in args (the last one given), or None."""
  value = None
  for i, arg in enumerate(args):
    m = re.match(rf"^-{{1,2}}{flag_name}(=(.*))?$", arg)
    if m:
      value = m.group(2) if m.group(1) else (args[i + 1] if i + 1 < len(args) else None)
  return value


def _overrides(args: list[str], flag_name: str) -> list[tuple[str, str | None]]:
  """(field, value or None) of every --<flag_name>.<field>[=value] in args."""
  out = []
  for arg in args:
    m = re.match(rf"^-{{1,2}}(no)?{flag_name}\.([^=]+)(=(.*))?$", arg, re.DOTALL)
    if m:
      out.append((m.group(2), m.group(4)))
  return out


def _walk(config: Any, field: str) -> tuple[Any, int | None]:
  """(the value at the dotted `field`, None), or (None, the index of its first missing part)."""
  node = config
  for depth, part in enumerate(field.split(".")):
    if not (isinstance(node, (ml_collections.ConfigDict, dict)) and part in node):
      return None, depth
    node = node[part]
  return node, None


def _check_override(config: Any, field: str, value: str | None, flag_name: str,
                    aliases: Callable[[Any], Aliases] | None) -> None:
  """ConfigError unless every part of the dotted `field` exists in `config`."""
  _, depth = _walk(config, field)
  if depth is not None:
    known = list(flatten(config.to_dict() if hasattr(config, "to_dict") else config))
    known += [".".join(k.split(".")[:depth + 1]) for k in known]
    shown = f"--{flag_name}.{field}" + ("" if value is None else f"={value}")
    renamed = NO_ALIASES if aliases is None else aliases(config)
    raise ConfigError(f"{shown}: {unknown_field(field, sorted(set(known)), renamed)}")


def _flag_message(message: str, flag_name: str, config: Any) -> str:
  """absl's refusal in one line, naming the config field and its type when it is one."""
  first = " ".join(message.split())
  m = _ILLEGAL.match(first)
  if not m or not m.group("name").startswith(flag_name + "."):
    return first
  field = m.group("name")[len(flag_name) + 1:]
  node, _ = _walk(config, field)
  name = type(node).__name__
  kind = ("a value of the field's type" if node is None
          else f"{'an' if name[0] in 'aeiou' else 'a'} {name}")
  return (f"--{m.group('name')}={m.group('value')}: config.{field} = {m.group('value')!r}: "
          f"allowed: {kind} ({m.group('why')})")
