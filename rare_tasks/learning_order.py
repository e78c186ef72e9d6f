"""The order in which tasks are learned, measured and predicted (PAPER.md section 2, appendix).

Measured: the first evaluation step at which a task's FVU is at or below the learned threshold.
Predicted by utility: the smallest width whose closed-form optimum learns the task (the rank, in
the utility order, of the feature that brings its FVU under the threshold): features of higher
utility pi_k lambda_kj are learned first. Predicted by frequency alone: tasks by decreasing pi_k.
The two predictions differ when a frequent task is complex (its variance spread over many
features of low utility each) and a rarer one is simple.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from rare_tasks import theory


def learned_width(mixture: np.ndarray, spectrum: np.ndarray, learned_fvu: float) -> np.ndarray:
  """Per task, the smallest width whose optimum has FVU <= learned_fvu, shape (K,) int.

  A task the full-width optimum does not learn (impossible for learned_fvu >= 0) gets K*m + 1.
  """
  total = spectrum.size
  widths = np.full(len(mixture), total + 1)
  for n in range(total, 0, -1):
    learned = theory.predict(mixture, spectrum, n).fvu <= learned_fvu
    widths = np.where(learned, n, widths)
  return widths


def first_learned_step(steps: Sequence[int], fvu: np.ndarray, learned_fvu: float) -> np.ndarray:
  """Per task, the first step with FVU <= learned_fvu (NaN if never): fvu (T, K) -> (K,)."""
  fvu = np.asarray(fvu, float)
  hit = fvu <= learned_fvu
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
