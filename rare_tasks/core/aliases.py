"""Renamed config fields, values and studies: the map that lets a work directory written under
the old names resume and re-report, and a refusal of an old name say what it is called now.

A track declares one `Aliases` next to its schema. `translate` rewrites a config as config.json
stores it (nested dicts) into today's names, before it is compared with today's config or laid
over today's defaults; `renamed` and `new_value` give today's name of one field or value.
"""

from __future__ import annotations

import copy
import dataclasses
import types
from collections.abc import Mapping
from typing import Any

_ABSENT = object()


@dataclasses.dataclass(frozen=True)
class Aliases:
  """Old names -> today's names, all read-only.

  studies: {old study name: new study name} (the value of config.study).
  fields: {old dotted field: new dotted field}; a field may be a whole section, which then
    moves with everything in it.
  values: {new dotted field: {old value: new value}}, applied after the fields have moved; a
    list (a grid axis's values) has each of its elements translated.
  absent: {dotted field: value}: what a config written before the field existed meant, where
    that is not today's default (a run predating config.train.rng drew with threefry).
  """

  studies: Mapping[str, str] = dataclasses.field(default_factory=dict)
  fields: Mapping[str, str] = dataclasses.field(default_factory=dict)
  values: Mapping[str, Mapping[Any, Any]] = dataclasses.field(default_factory=dict)
  absent: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self) -> None:
    for name in ("studies", "fields", "absent"):
      object.__setattr__(self, name, types.MappingProxyType(dict(getattr(self, name))))
    object.__setattr__(self, "values", types.MappingProxyType(
        {k: types.MappingProxyType(dict(v)) for k, v in self.values.items()}))

  def renamed(self, field: str) -> str | None:
    """Today's name of the dotted `field` when it, or a section holding it, was renamed (the
    longest renamed prefix wins); None when it was not."""
    parts = field.split(".")
    for i in range(len(parts), 0, -1):
      new = self.fields.get(".".join(parts[:i]))
      if new is not None:
        return ".".join([new, *parts[i:]])
    return None

  def new_value(self, field: str, value: Any) -> Any:
    """Today's spelling of `value` of the dotted (today's) `field`: the same object when it was
    not renamed. A list or tuple is translated element by element."""
    table = self.values.get(field)
    if not table:
      return value
    if isinstance(value, (list, tuple)):
      out = [_lookup(table, v) for v in value]
      return value if all(a is b for a, b in zip(out, value)) else type(value)(out)
    return _lookup(table, value)

  def translate(self, config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `config` (nested dicts, as config.json stores it) in today's names: renamed
    fields moved (a section they leave empty is dropped), renamed values and the renamed
    study replaced, and the `absent` fields it predates set to what it meant. Fields the map
    does not name are left as they are."""
    out = self._renamed(config)
    for field, value in self._lacking(out).items():
      _put(out, field, value)
    return out

  def lacking(self, config: Mapping[str, Any]) -> dict[str, Any]:
    """The `absent` fields that `config` (as config.json stores it) predates, with what it
    meant by them: {dotted field: value}."""
    return self._lacking(self._renamed(config))

  def _lacking(self, renamed: dict[str, Any]) -> dict[str, Any]:
    return {field: value for field, value in self.absent.items()
            if _node(renamed, field.split(".")) is _ABSENT}

  def _renamed(self, config: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(config))
    moved = [(new, value) for old, new in self.fields.items()
             if (value := _pop(out, old)) is not _ABSENT]
    for new, value in moved:  # all taken out first, so that two names may swap
      _put(out, new, value)
    for field in self.values:
      parts = field.split(".")
      parent = _node(out, parts[:-1])
      if isinstance(parent, dict) and parts[-1] in parent:
        parent[parts[-1]] = self.new_value(field, parent[parts[-1]])
    study = out.get("study")
    if isinstance(study, str) and study in self.studies:
      out["study"] = self.studies[study]
    return out


NO_ALIASES = Aliases()


def _lookup(table: Mapping[Any, Any], value: Any) -> Any:
  """table's new value for `value` (same type and equal: 1 is not True), else `value` itself."""
  for old, new in table.items():
    if type(old) is type(value) and old == value:
      return new
  return value


def _node(config: dict[str, Any], parts: list[str]) -> Any:
  """The value at the path `parts` of nested dicts, or _ABSENT."""
  node: Any = config
  for p in parts:
    if not isinstance(node, dict) or p not in node:
      return _ABSENT
    node = node[p]
  return node


def _pop(config: dict[str, Any], field: str) -> Any:
  """Removes and returns the value at the dotted `field` (_ABSENT when there is none); the
  sections it leaves empty are removed too."""
  parts = field.split(".")
  parent = _node(config, parts[:-1])
  if not isinstance(parent, dict) or parts[-1] not in parent:
    return _ABSENT
  value = parent.pop(parts[-1])
  for depth in range(len(parts) - 1, 0, -1):
    section = _node(config, parts[:depth])
    if section:
      break
    _node(config, parts[:depth - 1]).pop(parts[depth - 1])
  return value


def _put(config: dict[str, Any], field: str, value: Any) -> None:
  """Sets the dotted `field` to `value`, creating the sections on its path."""
  *parents, leaf = field.split(".")
  node = config
  for p in parents:
    if not isinstance(node.get(p), dict):
      node[p] = {}
    node = node[p]
  node[leaf] = value
