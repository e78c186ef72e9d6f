"""Task families by name (the interface: rare_tasks.tasks.task_family)."""

from rare_tasks.tasks.linear_mixture import LinearMixture
from rare_tasks.tasks.sparse_parity import SparseParity
from rare_tasks.tasks.task_family import TaskFamily

TASKS = {"linear_mixture": LinearMixture, "sparse_parity": SparseParity}
# The config.task fields each family is built from (the rest of config.task it ignores).
TASK_FIELDS = {
    "linear_mixture": ("num_tasks", "block_size", "num_rare", "basis", "basis_seed",
                       "spectrum_normalization"),
    "sparse_parity": ("num_tasks", "num_bits", "parity_bits", "num_rare", "secret_seed"),
}

__all__ = ["TASK_FIELDS", "TASKS", "LinearMixture", "SparseParity", "TaskFamily"]
