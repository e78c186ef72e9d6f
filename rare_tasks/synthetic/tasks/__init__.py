"""Task families by name (the interface: rare_tasks.synthetic.tasks.task_family)."""

from __future__ import annotations

import ml_collections

from rare_tasks.synthetic.tasks.linear_mixture import LinearMixture
from rare_tasks.synthetic.tasks.sparse_parity import SparseParity
from rare_tasks.synthetic.tasks.task_family import TaskFamily

# config.task.name -> family; a new family registers here (TASKS["name"] = Family).
TASKS: dict[str, type[TaskFamily]] = {"linear_mixture": LinearMixture,
                                      "sparse_parity": SparseParity}


def task_of(config: ml_collections.ConfigDict) -> TaskFamily:
  """The config's task family, built from the fields it reads (its `config_fields`)."""
  t = config.task
  family = TASKS[t.name]
  return family(**{f: tuple(t[f]) if isinstance(t[f], (list, tuple)) else t[f]
                   for f in family.config_fields})


__all__ = ["TASKS", "LinearMixture", "SparseParity", "TaskFamily", "task_of"]
