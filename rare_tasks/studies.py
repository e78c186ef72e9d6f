"""The kinds of study a config can ask for (config.study), each run by its own module."""

from __future__ import annotations

from collections.abc import Callable

from rare_tasks import grid_runner, mixture_design
from rare_tasks.config_schema import validate

RUNNERS: dict[str, Callable[..., grid_runner.RunReport]] = {
    "grid": grid_runner.run,
    "mixture_design": mixture_design.run,
}


def run(config, workdir_path, **kwargs) -> grid_runner.RunReport:
  """Runs (or resumes, or reports) the study of `config`: see RUNNERS."""
  validate(config)
  return RUNNERS[config.study](config, workdir_path, **kwargs)
