"""Probes of the representation features a model builds for its injected tasks (pure numpy).

Both probes read a matrix `features` of shape (p, d): one row per input symbol (e.g. the first
block's residual stream at that symbol's token, averaged over contexts), d feature columns.

Comparison task. Each of the p symbols has a hidden rank 0..p-1 (a random bijection), and a model
that solves the task should place the symbols along a one-dimensional order feature. `order_r2`
asks how well a linear read-out recovers the rank from the representation: it projects the rows
onto their top principal components and fits the rank by ordinary least squares, scoring R^2 on
held-out symbols only. Near 1 means the rank is linearly readable; near or below 0 means it is not
(a random representation gives about 0 or less, because held-out symbols cannot be predicted).

Modular addition over Z_p. Models that learn it represent the symbol a by waves cos(2 pi k a / p),
sin(2 pi k a / p) for a few key frequencies k. Ordering the rows by a and taking the discrete
Fourier transform along a, `fourier_spectrum` gives the share of the representation's variation
that each frequency k = 1..p//2 carries, and `fourier_modes` counts the frequencies that carry
clearly more than an even spread; `count_modes_over_layers` adds that count over layers.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_FACTOR = 2.0
MAX_COMPONENTS = 50
# Fixed so that the cross-validation folds, and hence order_r2, are reproducible.
_FOLD_SEED = 0
_ROUNDING = 1e-20


def _folds(p: int, folds: int) -> list[np.ndarray]:
  """Test indices of each of min(folds, p) contiguous folds of a fixed permutation of range(p)."""
  perm = np.random.default_rng(_FOLD_SEED).permutation(p)
  return np.array_split(perm, min(folds, p))


def _num_components(p: int, d: int, max_components: int) -> int:
  """Number k of principal components `order_r2` regresses on: min(max_components, d, p // 2),
  at least 1."""
  return max(1, min(max_components, d, p // 2))


def order_r2(features: np.ndarray, order: np.ndarray, max_components: int = MAX_COMPONENTS,
             folds: int = 5) -> float:
  """Cross-validated R^2 of a linear read-out of each symbol's hidden rank from its features.

  Args:
    features: shape (p, d), one row per symbol.
    order: shape (p,), the hidden rank of each row.
    max_components: cap on the number of principal components regressed on.
    folds: number of cross-validation folds (min(folds, p) are used); at least 2.

  PCA + ordinary least squares (np.linalg.lstsq, with an intercept), not ridge. With
  k = min(max_components, d, p // 2) (at least 1), for each fold the training rows' mean is
  subtracted from both folds, the top k right singular vectors of the centred training rows are
  the components (fewer when the training rows span fewer), both folds are projected onto them,
  and the rank is regressed on the training projections and predicted on the held-out ones, so
  neither the components nor the fit see a held-out row. The folds are contiguous blocks of a
  permutation of the rows drawn with a fixed seed, so the result is reproducible.

  Returns:
    1 - sum((y - yhat)^2) / sum((y - mean(y))^2) with yhat the out-of-fold predictions; negative
    when the read-out is worse than the mean. NaN when p < 4, the order is constant, or the
    features or order hold a non-finite value.
  """
  x = np.asarray(features, dtype=np.float64)
  y = np.asarray(order, dtype=np.float64)
  if x.ndim != 2 or y.shape != (x.shape[0],):
    raise ValueError(f"need features (p, d) and order (p,); got {x.shape} and {y.shape}")
  if folds < 2:
    raise ValueError(f"need folds >= 2, got {folds}")
  p, d = x.shape
  if p < 4 or not (np.isfinite(x).all() and np.isfinite(y).all()):
    return math.nan
  ss_tot = float(np.sum((y - y.mean()) ** 2))
  if ss_tot == 0:
    return math.nan
  k = _num_components(p, d, max_components)
  predictions = np.empty(p)
  for test in _folds(p, folds):
    train = np.setdiff1d(np.arange(p), test)
    mean = x[train].mean(axis=0)
    _, _, vt = np.linalg.svd(x[train] - mean, full_matrices=False)
    # Centred training rows span at most len(train) - 1 directions; the rest are arbitrary.
    components = vt[:min(k, len(train) - 1)].T
    design = np.column_stack([np.ones(len(train)), (x[train] - mean) @ components])
    coef = np.linalg.lstsq(design, y[train], rcond=None)[0]
    predictions[test] = coef[0] + (x[test] - mean) @ components @ coef[1:]
  return float(1.0 - np.sum((y - predictions) ** 2) / ss_tot)


def fourier_spectrum(features: np.ndarray) -> np.ndarray:
  """Share of the features' non-constant power at each frequency k = 1..p//2 of Z_p.

  Args:
    features: shape (p, d), row a the representation of a in Z_p (rows ordered by a).

  The DFT over a (np.fft.rfft along axis 0) of every column; the power of frequency k is summed
  over the d columns. Frequencies k and p - k make one real mode, so the power of k < p / 2 is
  2 |X_k|^2 (the rfft keeps only X_k) and the Nyquist k = p / 2 of even p is |X_k|^2; by
  Parseval the shares are then the fractions of the centred features' sum of squares, and a
  column cos(2 pi k a / p) puts all of it at k. The constant k = 0 is excluded.

  Returns:
    shape (p // 2,), shares summing to 1. All NaN when the features hold a non-finite value or
    their non-constant power is 0 up to rounding: under 1e-20 of the power with the constant
    (variation under 1e-10 of the features' scale).
  """
  x = np.asarray(features, dtype=np.float64)
  if x.ndim != 2:
    raise ValueError(f"features must have shape (p, d), got {x.shape}")
  p = x.shape[0]
  if not np.isfinite(x).all():
    return np.full(p // 2, math.nan)
  centred = x - x.mean(axis=0)
  power = np.sum(np.abs(np.fft.rfft(centred, axis=0)[1:p // 2 + 1]) ** 2, axis=1)
  if p % 2 == 0:
    power[:-1] *= 2
  else:
    power *= 2
  total = float(power.sum())
  # Rounding leaves a little power even in constant columns (e.g. 0.1 is not exact); spread
  # over the frequencies it would read as modes, so below _ROUNDING of the power with the
  # constant it counts as none.
  if not (math.isfinite(total) and total > _ROUNDING * p * float(np.sum(x ** 2))):
    return np.full(p // 2, math.nan)
  return power / total


def fourier_modes(features: np.ndarray, factor: float = DEFAULT_FACTOR) -> int:
  """Number of frequencies whose share of `fourier_spectrum(features)` exceeds
  factor / (p // 2), i.e. `factor` times an even spread over the p // 2 frequencies.

  Args:
    features: shape (p, d), rows ordered by a in Z_p.
    factor: multiple of the even share a key frequency must exceed.

  With noise features every share is near 1 / (p // 2) (closer the more columns are summed), so
  the default factor 2 counts none; a planted mode takes most of the power and is counted.
  Returns 0 when the shares are NaN (zero or non-finite features).
  """
  shares = fourier_spectrum(features)
  if len(shares) == 0 or np.isnan(shares).any():
    return 0
  return int(np.sum(shares > factor / len(shares)))


def count_modes_over_layers(per_layer_features: np.ndarray,
                            factor: float = DEFAULT_FACTOR) -> int:
  """Sum over layers of `fourier_modes`, the count of key frequencies in each layer.

  Args:
    per_layer_features: shape (L, p, d), layer l's features with rows ordered by a in Z_p.
    factor: as in `fourier_modes`.
  """
  per_layer = np.asarray(per_layer_features)
  if per_layer.ndim != 3:
    raise ValueError(f"per_layer_features must have shape (L, p, d), got {per_layer.shape}")
  return sum(fourier_modes(layer, factor) for layer in per_layer)
