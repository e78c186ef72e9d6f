"""Task families by name."""

from rare_tasks.tasks.linear_mixture import LinearMixture

TASKS = {"linear_mixture": LinearMixture}

__all__ = ["TASKS", "LinearMixture"]
