"""config.study -> the study that runs it: the one module that sees every track.

Each study module has `run(config, workdir, overwrite=..., run_files=..., ...)` and `FILES`, the
files it writes into a work directory. `run` here gives every study the union of all studies'
files, so that --overwrite of a directory holding one study's run by another removes all of the
old run's files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections

from rare_tasks.core.config import ConfigError
from rare_tasks.core.report import RunReport, declared_files
from rare_tasks.lm import grid_study as lm_grid_study
from rare_tasks.lm import pretrain
from rare_tasks.synthetic import grid_study, mixture_design

STUDIES = {"grid": grid_study, "mixture_design": mixture_design, "lm_pretrain": pretrain,
           "lm_width_by_frequency": lm_grid_study}
RUN_FILES = declared_files(*(s.FILES for s in STUDIES.values()))


def run(config: ml_collections.ConfigDict, workdir_path: str | Path, **kwargs: Any) -> RunReport:
  """Runs (or resumes, or reports) the study of `config`; the study checks the config first."""
  study = config.get("study")
  if study not in STUDIES:
    raise ConfigError(f"config.study = {study!r}: allowed: one of {sorted(STUDIES)}")
  return STUDIES[study].run(config, workdir_path, run_files=RUN_FILES, **kwargs)
