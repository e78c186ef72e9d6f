"""Task families by name (the interface: rare_tasks.tasks.task_family)."""

from rare_tasks.tasks.linear_mixture import LinearMixture
from rare_tasks.tasks.sparse_parity import SparseParity
from rare_tasks.tasks.task_family import TaskFamily

# config.task.name -> family; a new family registers here (TASKS["name"] = Family).
TASKS = {"linear_mixture": LinearMixture, "sparse_parity": SparseParity}

__all__ = ["TASKS", "LinearMixture", "SparseParity", "TaskFamily"]
