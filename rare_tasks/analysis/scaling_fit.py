"""Power-law fits of loss against width, L(N) = L0 + A N^-alpha, and the scaling regions they imply.

The fit is a deterministic least squares with L0 >= 0, A >= 0 and ALPHA_MIN <= alpha <= ALPHA_MAX:
for a fixed alpha the model is linear in (L0, A), so that two-parameter non-negative problem is
solved exactly; the residual sum of squares is then profiled over alpha on a log grid and refined
by zooming in on the best grid point. Seed-to-seed uncertainty comes from a bootstrap over seeds.

The phenomenological reading (an infinite-data loss law): a model of width N cannot go below
L(N) however much data it sees, so the gap L(N_small) - L(N_large) is reachable only by model
scaling, and a task whose small-model loss is already within epsilon of the large model's is
learnable via data scaling.
"""

from __future__ import annotations

import dataclasses

import numpy as np

ALPHA_MIN = 1e-3
ALPHA_MAX = 4.0
# The profile over alpha: a log grid, then repeated zooms onto the neighbours of the best point;
# each zoom narrows the bracket by (_ZOOM_SIZE - 1) / 2, so 4 zooms resolve alpha to ~1e-8.
_GRID_SIZE = 256
_ZOOM_SIZE = 65
_ZOOM_LEVELS = 4
_MIN_WIDTHS = 3
# Bootstrap resamples fitted at once; bounds the (3, chunk, grid, widths) temporaries.
_CHUNK = 256

DATA_SCALING = "data scaling"
MODEL_SCALING = "model scaling"


@dataclasses.dataclass(frozen=True)
class PowerLaw:
  """L(N) = l0 + a * N^-alpha."""

  l0: float
  a: float
  alpha: float

  def __call__(self, n: np.ndarray | float) -> np.ndarray:
    """The loss at width(s) n, same shape as n."""
    n = np.asarray(n, dtype=np.float64)
    return self.l0 + self.a * n ** (-self.alpha)

  def as_dict(self) -> dict[str, float]:
    return {"l0": float(self.l0), "a": float(self.a), "alpha": float(self.alpha)}


def _linear_fits(x: np.ndarray, y: np.ndarray, w: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Exact weighted least squares of y ~ l0 + a x with l0, a >= 0, for every alpha of every fit.

  x (B, G, P) holds N^-alpha for G values of alpha in each of B fits; y and w (B, P), w zero on
  dropped points (whose y must be finite). Returns l0, a, rss, each (B, G). The problem is a convex
  quadratic over a quadrant: the unconstrained optimum if feasible, else the best of the two
  boundary rays, each a one-dimensional fit clipped at zero.
  """
  w = w[:, None, :]
  y = y[:, None, :]
  total = w.sum(-1)
  x_mean = (w * x).sum(-1) / total
  y_mean = (w * y).sum(-1) / total
  dx = x - x_mean[..., None]
  var = (w * dx * dx).sum(-1)
  cov = (w * dx * (y - y_mean[..., None])).sum(-1)
  positive = var > 0
  a_free = np.where(positive, cov / np.where(positive, var, 1.0), 0.0)
  l0_free = y_mean - a_free * x_mean
  a_origin = np.maximum((w * x * y).sum(-1) / (w * x * x).sum(-1), 0.0)

  zeros = np.zeros_like(a_origin)
  l0 = np.stack([l0_free, zeros, np.broadcast_to(np.maximum(y_mean, 0.0), zeros.shape)])
  a = np.stack([a_free, a_origin, zeros])
  residual = y - l0[..., None] - a[..., None] * x
  rss = (w * residual * residual).sum(-1)
  rss[0] = np.where((l0_free >= 0) & (a_free >= 0), rss[0], np.inf)
  best = rss.argmin(0)[None]
  return tuple(np.take_along_axis(v, best, 0)[0] for v in (l0, a, rss))


def _profile_fits(widths: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
  """B fits at once: widths (P,), y and w (B, P) as in _linear_fits -> l0, a, alpha, rss (B,)."""
  log_n = np.log(widths)
  batch = np.arange(y.shape[0])
  grid = np.broadcast_to(np.geomspace(ALPHA_MIN, ALPHA_MAX, _GRID_SIZE), (y.shape[0], _GRID_SIZE))
  for level in range(_ZOOM_LEVELS + 1):
    l0, a, rss = _linear_fits(np.exp(-grid[..., None] * log_n), y, w)
    i = rss.argmin(-1)
    if level < _ZOOM_LEVELS:
      lo = grid[batch, np.maximum(i - 1, 0)]
      hi = grid[batch, np.minimum(i + 1, grid.shape[1] - 1)]
      grid = np.geomspace(lo, hi, _ZOOM_SIZE, axis=-1)
  return l0[batch, i], a[batch, i], grid[batch, i], rss[batch, i]


def _fit_batch(widths: np.ndarray, losses: np.ndarray, weights: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
  """Fits of losses (B, P) -> params (B, 3) as (l0, a, alpha) and rss (B,); NaN rows where fewer
  than _MIN_WIDTHS distinct widths keep a finite loss."""
  finite = np.isfinite(losses)
  distinct = np.array([np.unique(widths[row]).size for row in finite])
  ok = distinct >= _MIN_WIDTHS
  params = np.full((losses.shape[0], 3), np.nan)
  rss = np.full(losses.shape[0], np.nan)
  if ok.any():
    y = np.where(finite[ok], losses[ok], 0.0)
    w = np.where(finite[ok], np.broadcast_to(weights, losses.shape)[ok], 0.0)
    l0, a, alpha, rss[ok] = _profile_fits(widths, y, w)
    params[ok] = np.stack([l0, a, alpha], -1)
  return params, rss


def fit_power_law(widths: np.ndarray, losses: np.ndarray, weights: np.ndarray | None = None
                  ) -> tuple[PowerLaw, float]:
  """Least-squares fit of L(N) = L0 + A N^-alpha to losses (P,) at widths (P,).

  Constraints: L0 >= 0, A >= 0, ALPHA_MIN <= alpha <= ALPHA_MAX. Returns the fit and its residual
  sum of squares (weighted by `weights` (P,), positive, when given). Widths may repeat (e.g. one
  point per seed). Non-finite losses (diverged runs) are dropped; if fewer than 3 distinct widths
  keep a finite loss, the fit and rss are NaN. Data that do not decrease give A = 0 (alpha is then
  not identified; a finite grid value is returned).

  Raises ValueError if the widths hold fewer than 3 distinct values.
  """
  widths = np.asarray(widths, dtype=np.float64)
  losses = np.asarray(losses, dtype=np.float64)
  w = np.ones_like(losses) if weights is None else np.asarray(weights, dtype=np.float64)
  if widths.ndim != 1 or losses.shape != widths.shape or w.shape != widths.shape:
    raise ValueError(f"widths, losses and weights must be 1-D of one length, got shapes "
                     f"{widths.shape}, {losses.shape}, {w.shape}")
  if not np.all(np.isfinite(widths) & (widths > 0)):
    raise ValueError(f"widths must be positive and finite, got {widths}")
  if not np.all(np.isfinite(w) & (w > 0)):
    raise ValueError(f"weights must be positive and finite, got {w}")
  num_widths = np.unique(widths).size
  if num_widths < _MIN_WIDTHS:
    raise ValueError(f"a power-law fit needs at least {_MIN_WIDTHS} distinct widths, "
                     f"got {num_widths}")
  params, rss = _fit_batch(widths, losses[None], w)
  return PowerLaw(*(float(p) for p in params[0])), float(rss[0])


def _seed_mean(losses: np.ndarray) -> np.ndarray:
  """Mean over axis -2 (seeds) ignoring NaN; NaN where every seed is NaN, without a warning."""
  finite = np.isfinite(losses)
  count = finite.sum(-2)
  total = np.where(finite, losses, 0.0).sum(-2)
  return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def bootstrap_power_law(widths: np.ndarray, losses_by_seed: np.ndarray, num_resamples: int = 1000,
                        seed: int = 0, level: float = 0.9) -> dict:
  """Power-law fit to the seed-mean loss, with percentile bootstrap intervals over seeds.

  widths (W,), losses_by_seed (S, W) with NaN for diverged runs. The point fit is to the mean over
  seeds (ignoring NaN) per width; each of the `num_resamples` resamples draws S seeds with
  replacement (numpy Generator seeded by `seed`), averages them per width and refits. The interval
  of each parameter is the central `level` quantile range of the resampled fits (NaN fits, from
  resamples with too few finite widths, are left out). With a single seed every resample equals
  the data, so each interval is degenerate, [v, v]: it says nothing about seed-to-seed spread.

  Returns {"fit": {l0, a, alpha}, "rss", "interval": {"l0": [lo, hi], "a": [...],
  "alpha": [...]}, "level", "num_resamples", "num_seeds"}.
  """
  widths = np.asarray(widths, dtype=np.float64)
  losses_by_seed = np.asarray(losses_by_seed, dtype=np.float64)
  if losses_by_seed.ndim != 2 or losses_by_seed.shape[1] != widths.size:
    raise ValueError(f"losses_by_seed must have shape (seeds, {widths.size}), "
                     f"got {losses_by_seed.shape}")
  if not 0 < level < 1:
    raise ValueError(f"level must lie in (0, 1), got {level}")
  if num_resamples < 1:
    raise ValueError(f"num_resamples must be at least 1, got {num_resamples}")
  num_seeds = losses_by_seed.shape[0]
  fit, rss = fit_power_law(widths, _seed_mean(losses_by_seed))

  rng = np.random.default_rng(seed)
  draws = rng.integers(0, num_seeds, size=(num_resamples, num_seeds))
  # A resample is a multiset of seeds: fit each distinct one once (few seeds have few of them,
  # e.g. 3 for 2 seeds) and map the fits back to the resamples.
  unique, inverse = np.unique(np.sort(draws, axis=1), axis=0, return_inverse=True)
  means = _seed_mean(losses_by_seed[unique])
  ones = np.ones(widths.size)
  params = np.concatenate([_fit_batch(widths, means[i:i + _CHUNK], ones)[0]
                           for i in range(0, len(unique), _CHUNK)])[inverse.reshape(-1)]
  ok = np.all(np.isfinite(params), axis=1)
  quantiles = [(1 - level) / 2, (1 + level) / 2]
  if ok.any():
    bounds = np.quantile(params[ok], quantiles, axis=0)
  else:
    bounds = np.full((2, 3), np.nan)
  interval = {name: [float(bounds[0, j]), float(bounds[1, j])]
              for j, name in enumerate(("l0", "a", "alpha"))}
  return {"fit": fit.as_dict(), "rss": rss, "interval": interval, "level": level,
          "num_resamples": num_resamples, "num_seeds": num_seeds}


def scaling_regions(fit: PowerLaw, small_width: float, large_width: float,
                    epsilon: float) -> dict:
  """How much of the loss of a small model only model scaling can remove, under an
  infinite-data loss law L(N) = L0 + A N^-alpha.

  L(small_width) is the floor the small model reaches by data scaling alone; the gap
  L(small_width) - L(large_width) is reachable only by model scaling, and it is required when the
  gap exceeds epsilon. L0 is irreducible at any width.
  """
  if not 0 < small_width <= large_width:
    raise ValueError(f"need 0 < small_width <= large_width, got {small_width}, {large_width}")
  loss_small = float(fit(small_width))
  loss_large = float(fit(large_width))
  gap = loss_small - loss_large
  return {"small_width": small_width, "large_width": large_width, "loss_small": loss_small,
          "loss_large": loss_large, "model_scaling_gap": gap, "irreducible": float(fit.l0),
          "requires_model_scaling": bool(gap > epsilon)}


def classify_tasks(per_task_small: np.ndarray, per_task_large: np.ndarray,
                   epsilon: float) -> list[str]:
  """Per task (K,): DATA_SCALING if the small model's asymptotic loss is within epsilon of the
  large model's (small - large <= epsilon), else MODEL_SCALING.

  Raises ValueError on arrays of different shapes or non-finite losses.
  """
  small = np.asarray(per_task_small, dtype=np.float64)
  large = np.asarray(per_task_large, dtype=np.float64)
  if small.ndim != 1 or small.shape != large.shape:
    raise ValueError(f"per-task losses must be 1-D of one length, got shapes {small.shape}, "
                     f"{large.shape}")
  if not np.all(np.isfinite(small) & np.isfinite(large)):
    raise ValueError("per-task losses must be finite")
  return [DATA_SCALING if gap <= epsilon else MODEL_SCALING for gap in small - large]
