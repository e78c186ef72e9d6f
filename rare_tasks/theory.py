"""Closed-form optimum of the linear setting (PAPER.md section 2, Theorem 3 and Proposition 6).

M = sum_k pi_k C_k has eigenvalues u_{k,j} = pi_k lambda_{k,j}, the utility of feature j of task
k. A linear encoder of width N keeps the N features of highest utility (ties broken by task, then
feature order); the pi-weighted loss at the optimum is the sum of the utilities it drops.
"""

from __future__ import annotations

import dataclasses

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

