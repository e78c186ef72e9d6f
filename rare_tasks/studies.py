"""config.study -> the study that runs it: the one module that sees every track.

Each study module has `run(config, workdir, overwrite=..., run_files=..., ...)` and `FILES`, the
files it writes into a work directory, and may have `ALIASES`, the config fields and values its
track renamed (rare_tasks.core.aliases). `run` here gives every study the union of all studies'
files, so that --overwrite of a directory holding one study's run by another removes all of the
old run's files. A study's module is imported when it runs: a synthetic run does not import the
language-model track (0.9 s of a start-up on a 2-core CPU), and the other studies' modules are
imported for their FILES only when an overwrite deletes a run.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import ml_collections

from rare_tasks.core import workdir_lock
from rare_tasks.core.aliases import NO_ALIASES, Aliases
from rare_tasks.core.config import ConfigError
from rare_tasks.core.report import RunReport, declared_files

# config.study -> the module that runs it.
STUDIES = {"grid": "rare_tasks.synthetic.grid_study",
           "mixture_design": "rare_tasks.synthetic.mixture_design",
           "lm_pretrain": "rare_tasks.lm.pretrain",
           "lm_size_by_frequency": "rare_tasks.lm.grid_study",
           "lm_mixture_design": "rare_tasks.lm.mixture_design"}


def study_module(study: str) -> ModuleType:
  """The module of `study` (a key of STUDIES), imported on first use."""
  return importlib.import_module(STUDIES[study])


class _AllStudiesFiles(Sequence[str]):
  """Every study's FILES in one sequence; the study modules are imported on first access."""

  def _files(self) -> tuple[str, ...]:
    return declared_files(*(study_module(s).FILES for s in STUDIES))

  def __getitem__(self, index):
    return self._files()[index]

  def __len__(self) -> int:
    return len(self._files())

  def __iter__(self) -> Iterator[str]:
    return iter(self._files())


RUN_FILES: Sequence[str] = _AllStudiesFiles()


def aliases_of(config: Any) -> Aliases:
  """The renamed fields and values of the study of `config` (its module's ALIASES): none for a
  study that declares none, or a config whose study is not one of STUDIES."""
  study = config.get("study") if isinstance(config, (dict, ml_collections.ConfigDict)) else None
  if not isinstance(study, str) or study not in STUDIES:
    return NO_ALIASES
  return _declared(study)


def _declared(study: str) -> Aliases:
  """The ALIASES of a study's module (none when it declares none)."""
  return getattr(study_module(study), "ALIASES", NO_ALIASES)


def renamed_study(study: str) -> str | None:
  """Today's name of a study renamed since (from the studies' ALIASES), or None. Imports every
  study's module: called only for a name that is not a study."""
  for name in STUDIES:
    new = _declared(name).studies.get(study)
    if new is not None:
      return new
  return None


def run(config: ml_collections.ConfigDict, workdir_path: str | Path, **kwargs: Any) -> RunReport:
  """Runs (or resumes, or reports) the study of `config`; the study checks the config first."""
  study = config.get("study")
  if study not in STUDIES:
    new = renamed_study(study) if isinstance(study, str) else None
    if new is not None:
      raise ConfigError(f"config.study = {study!r} was renamed {new!r}")
    raise ConfigError(f"config.study = {study!r}: allowed: one of {sorted(STUDIES)}")
  # One run at a time per work directory: a second is refused while this one lives.
  with workdir_lock.held(workdir_path):
    return study_module(study).run(config, workdir_path, run_files=RUN_FILES, **kwargs)
