"""The order in which tasks are learned, measured and compared with a prediction (docs/science.md,
"Complexity against frequency").

Measured: the first evaluation step at which a task's loss is at or below the learned threshold.
A prediction is any per-task number whose order is the predicted learning order: the task
frequency (negated: frequent first), or a closed form's width at which its optimum learns the
task (in the linear setting, the utility order). The agreement of the two orders is counted over
pairs of tasks.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


def first_learned_step(steps: Sequence[int], fvu: np.ndarray,
                       learned_threshold: float) -> np.ndarray:
  """Per task, the first step with FVU <= learned_threshold (NaN if never): fvu (T, K) -> (K,)."""
  fvu = np.asarray(fvu, float)
  hit = fvu <= learned_threshold
  first = np.argmax(hit, axis=0)
  return np.where(hit.any(0), np.asarray(steps, float)[first], np.nan)


def pair_agreement(measured: np.ndarray, predicted: np.ndarray) -> tuple[float, int]:
  """Fraction of task pairs that `predicted` orders as `measured` does, and the pairs counted.

  Only pairs of tasks that are both learned (finite) at different steps and have different
  predictions count: ties carry no order.
  """
  agree, counted = 0, 0
  for i, j in itertools.combinations(range(len(measured)), 2):
    mi, mj, pi, pj = measured[i], measured[j], predicted[i], predicted[j]
    if not (np.isfinite(mi) and np.isfinite(mj)) or mi == mj or pi == pj:
      continue
    counted += 1
    agree += (mi < mj) == (pi < pj)
  return (agree / counted if counted else float("nan")), counted
