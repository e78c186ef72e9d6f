"""Closed-form optimum of the linear setting (docs/science.md, "The closed form": the paper's
Theorem 3 and Proposition 6).

M = sum_k pi_k C_k has eigenvalues u_{k,j} = pi_k lambda_{k,j}, the utility of feature j of task
k. A linear encoder of width N keeps the N features of highest utility (ties broken by task, then
feature order); the pi-weighted loss at the optimum is the sum of the utilities it drops.

The functions take a mixture pi (K,) and a spectrum lambda (K, m). `LinearTheory` binds them to
a task family (its mixture and spectrum of a grid cell's values) and is what the studies and
reports ask a family with a closed form for (`TaskFamily.theory`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Prediction:
  """The optimum of a width-N linear encoder on one mixture.

  Attributes:
    utilities: u_{k,j}, shape (K, m).
    order: (task, feature) pairs by decreasing utility, shape (K*m, 2).
    kept: whether the optimum keeps feature j of task k, shape (K, m) bool.
    fvu: predicted fraction of variance unexplained per task, shape (K,).
    critical_width: per task, the smallest width whose optimum keeps its top feature, shape (K,).
    optimal_loss: the pi-weighted squared error at the optimum, sum_k pi_k E||yhat_k - z_k||^2.
  """

  utilities: np.ndarray
  order: np.ndarray
  kept: np.ndarray
  fvu: np.ndarray
  critical_width: np.ndarray
  optimal_loss: float


def utility_order(utilities: np.ndarray) -> np.ndarray:
  """(task, feature) pairs by decreasing utility; stable, so ties go to the lower task index."""
  flat = np.asarray(utilities, dtype=np.float64).reshape(-1)
  idx = np.argsort(-flat, kind="stable")
  return np.stack(np.unravel_index(idx, utilities.shape), axis=-1)


def predict(mixture: np.ndarray, spectrum: np.ndarray, width: int) -> Prediction:
  """Closed-form optimum for task probabilities `mixture` (K,) and spectrum `spectrum` (K, m)."""
  mixture = np.asarray(mixture, dtype=np.float64)
  spectrum = np.asarray(spectrum, dtype=np.float64)
  utilities = mixture[:, None] * spectrum
  order = utility_order(utilities)
  rank = np.empty(utilities.size, dtype=np.int64)
  rank[np.ravel_multi_index(order.T, utilities.shape)] = np.arange(utilities.size)
  rank = rank.reshape(utilities.shape)
  kept = rank < width
  fvu = 1.0 - (spectrum * kept).sum(-1) / spectrum.sum(-1)
  # The top feature of task k is its largest-eigenvalue feature; width rank+1 first keeps it.
  top = np.argmax(spectrum, axis=-1)
  critical_width = rank[np.arange(len(mixture)), top] + 1
  optimal_loss = float((utilities * ~kept).sum())
  return Prediction(utilities, order, kept, fvu, critical_width, optimal_loss)



def learned_width(mixture: np.ndarray, spectrum: np.ndarray,
                  learned_threshold: float) -> np.ndarray:
  """Per task, the smallest width whose optimum has FVU <= learned_threshold, shape (K,) int.

  A task the full-width optimum does not learn (impossible for learned_threshold >= 0) gets K*m + 1.
  """
  total = spectrum.size
  widths = np.full(len(mixture), total + 1)
  for n in range(total, 0, -1):
    learned = predict(mixture, spectrum, n).fvu <= learned_threshold
    widths = np.where(learned, n, widths)
  return widths


class LinearTheory:
  """The closed form of a linear task family, evaluated at a grid cell.

  `task` supplies mixture(rare_frequency, common_exponent) (K,), spectrum(beta) (K, m) and
  rare_tasks. A `cell` has its `mixture` (K,) and `values`; where the closed form is asked at
  another rare frequency (or width) than a cell's, it takes grid `values` (width,
  rare_frequency, common_exponent, beta) and makes the mixture of that frequency.
  """

  def __init__(self, task: Any):
    self.task = task

  def _mixture(self, values: dict[str, Any], frequency: float | None = None) -> np.ndarray:
    f = values["rare_frequency"] if frequency is None else frequency
    return self.task.mixture(f, values["common_exponent"])

  def predict(self, cell: Any) -> Prediction:
    """The optimum of a cell (its `mixture` and `values`) at its width."""
    return predict(np.asarray(cell.mixture), self.task.spectrum(cell.values["beta"]),
                   cell.values["width"])

  def critical_width(self, values: dict[str, Any], frequency: float) -> int:
    """The first rare task's critical width at rare frequency `frequency`."""
    p = predict(self._mixture(values, frequency), self.task.spectrum(values["beta"]), 1)
    return int(p.critical_width[self.task.rare_tasks[0]])

  def learned_width(self, cell: Any, learned_threshold: float) -> np.ndarray:
    """Per task (K,), the smallest width whose optimum learns it in a cell: the utility order."""
    return learned_width(np.asarray(cell.mixture), self.task.spectrum(cell.values["beta"]),
                         learned_threshold)

  def top_utility(self, cell: Any) -> np.ndarray:
    """Per task (K,), the utility of its top feature in a cell."""
    return (np.asarray(cell.mixture)[:, None] * self.task.spectrum(cell.values["beta"])).max(-1)

  def min_frequency(self, values: dict[str, Any], learned_threshold: float,
                    max_frequency: float) -> float:
    """The critical frequency at `values["width"]`: the smallest rare frequency whose optimum has
    every rare task's FVU <= learned_threshold (bisection on a log scale; the FVU falls with the
    frequency). NaN when even max_frequency is not learned."""
    spectrum = self.task.spectrum(values["beta"])
    rare = list(self.task.rare_tasks)

    def learned(f: float) -> bool:
      fvu = predict(self._mixture(values, f), spectrum, values["width"]).fvu
      return bool((fvu[rare] <= learned_threshold).all())

    lo, hi = np.log(1e-12), np.log(max_frequency)
    if not learned(np.exp(hi)):
      return float("nan")
    for _ in range(80):
      mid = (lo + hi) / 2
      lo, hi = (lo, mid) if learned(np.exp(mid)) else (mid, hi)
    return float(np.exp(hi))

  def min_width(self, values: dict[str, Any], frequency: float, learned_threshold: float) -> int:
    """The smallest width whose optimum learns every rare task at `frequency`."""
    widths = learned_width(self._mixture(values, frequency), self.task.spectrum(values["beta"]),
                           learned_threshold)
    return int(widths[list(self.task.rare_tasks)].max())

  def optimum_curve(self, values: dict[str, Any], widths: Sequence[int]) -> dict[str, Any]:
    """sum_k pi_k FVU_k(N) at the optimum (and each task's FVU) at each width of `widths`."""
    mixture = self._mixture(values)
    spectrum = self.task.spectrum(values["beta"])
    fvu = np.stack([predict(mixture, spectrum, int(n)).fvu for n in widths])
    return {"widths": [int(n) for n in widths], "total": (fvu @ mixture).tolist(),
            "tasks": fvu.T.tolist()}
