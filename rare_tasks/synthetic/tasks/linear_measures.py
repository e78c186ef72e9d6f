"""Per-task measurements of a model on the linear task mixture: FVU and feature capture.

FVU_k = E||yhat_k - z_k||^2 / Tr(C_k), estimated on held-out samples (or exact for linear
models). Feature capture l_k(U) = Tr(P_U C_k) / Tr(C_k), U the row space of the (linear) encoder,
is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import threadpoolctl


def feature_indices(tasks: Sequence[int], block_size: int) -> np.ndarray:
  """The feature (column) indices of the given tasks' blocks, task by task, shape (len * m,)."""
  return np.concatenate([np.arange(k * block_size, (k + 1) * block_size) for k in tasks])


def per_task_squared_error(outputs: jax.Array, targets: jax.Array, num_tasks: int) -> jax.Array:
  """Squared error of every head on every example: (B, K*m), (B, K*m) -> (B, K)."""
  err = (outputs - targets) ** 2
  return err.reshape(err.shape[0], num_tasks, -1).sum(-1)


def own_head_loss(own_outputs: jax.Array, targets: jax.Array, tasks: jax.Array,
                  num_tasks: int) -> jax.Array:
  """`masked_loss` from each example's own head alone: own outputs (B, m), targets (B, K*m),
  tasks (B,) -> the batch mean of the squared error against the own task's target block."""
  blocks = targets.reshape(targets.shape[0], num_tasks, -1)
  own_targets = jnp.take_along_axis(blocks, tasks[:, None, None], axis=1)[:, 0]
  return jnp.sum((own_outputs - own_targets) ** 2) / own_outputs.shape[0]


def fvu(outputs: jax.Array, targets: jax.Array, spectrum: jax.Array) -> jax.Array:
  """Per-task FVU on a sample: outputs and targets (B, K*m), spectrum lambda (K, m) -> (K,)."""
  mse = per_task_squared_error(outputs, targets, spectrum.shape[0]).mean(0)
  return mse / spectrum.sum(-1)


def feature_capture(encoder_map: np.ndarray, basis: np.ndarray, spectrum: np.ndarray,
                    rtol: float = 1e-5) -> np.ndarray:
  """l_k(U) per task: encoder_map (..., N, d), basis columns (d, K*m), spectrum (..., K, m)
  -> (..., K).

  U is the row space of `encoder_map` W; directions with singular value below `rtol` times the
  largest do not count (they carry no signal to the heads). `basis` holds the feature directions
  of the K tasks measured (Q itself for all tasks, or some of its column blocks). With G = W W^T
  (N, N), ||P_U q||^2 = (W q)^T G^+ (W q). Computed on the host in float64: by a Cholesky solve
  when every G is well conditioned (pivots above rtol^2 times the largest diagonal entry), else
  from the eigendecomposition of G keeping eigenvalues above rtol^2 times the largest. numpy
  (one BLAS thread), because a batched LAPACK call inside a multi-device CPU program can
  deadlock jaxlib's shared thread pool, and BLAS threads would fight XLA's for the cores.
  """
  with threadpoolctl.threadpool_limits(1):
    return _feature_capture(encoder_map, basis, spectrum, rtol)


def _feature_capture(encoder_map, basis, spectrum, rtol):
  encoder_map = np.asarray(encoder_map, np.float64)
  spectrum = np.asarray(spectrum, np.float64)
  # A diverged model (non-finite weights) has no row space: NaN capture, not a LinAlgError.
  finite = np.isfinite(encoder_map).all(axis=(-2, -1))
  encoder_map = np.where(finite[..., None, None], encoder_map, 0.0)
  gram = encoder_map @ np.swapaxes(encoder_map, -1, -2)
  projected = encoder_map @ np.asarray(basis, np.float64)  # W q_j for every direction q_j
  captured = _captured_by_cholesky(gram, projected, rtol) if finite.all() else None
  if captured is None:
    e, u = np.linalg.eigh(gram)
    keep = e > (rtol ** 2) * e[..., -1:]
    inv = np.where(keep, 1.0 / np.where(keep, e, 1.0), 0.0)
    coords = np.swapaxes(u, -1, -2) @ projected
    captured = np.sum(coords ** 2 * inv[..., :, None], axis=-2)
  captured = captured.reshape(captured.shape[:-1] + spectrum.shape[-2:])
  capture = (captured * spectrum).sum(-1) / spectrum.sum(-1)
  return np.where(finite[..., None], capture, np.nan)


def _captured_by_cholesky(gram: np.ndarray, projected: np.ndarray,
                          rtol: float) -> np.ndarray | None:
  """||P_U q_j||^2 (..., K*m) via G = L L^T, or None if some G is (nearly) singular."""
  try:
    chol = np.linalg.cholesky(gram)
  except np.linalg.LinAlgError:
    return None
  pivots = np.diagonal(chol, axis1=-2, axis2=-1) ** 2
  scale = np.diagonal(gram, axis1=-2, axis2=-1).max(-1, keepdims=True)
  if not (pivots > (rtol ** 2) * scale).all():
    return None
  # ||L^{-1} W q||^2 = (W q)^T G^{-1} (W q).
  return np.sum(np.linalg.solve(chol, projected) ** 2, axis=-2)


def population_fvu(encoder_map: jax.Array, heads: jax.Array, basis: jax.Array,
                   spectrum: jax.Array, tasks: tuple[int, ...] | None = None) -> jax.Array:
  """Exact per-task FVU of a linear model: encoder_map W (N, d), heads kernel H (N, K*m),
  spectrum (K, m) -> (K,), or (len(tasks),) for the given tasks only.

  With x = Q z, z ~ N(0, diag(lambda)), the prediction error is (H^T W Q - I) z, so task k's
  expected squared error is the lambda-weighted squared norm of its rows of H^T W Q - I. For a
  few tasks only their rows are formed: (H_T^T W) Q costs |T| m d (N + d) instead of d^2 (N + d).
  """
  num_tasks, block = spectrum.shape
  tasks = tuple(range(num_tasks)) if tasks is None else tuple(tasks)
  rows = feature_indices(tasks, block)
  a = (heads[:, rows].T @ encoder_map) @ basis
  target = jax.nn.one_hot(rows, a.shape[1], dtype=a.dtype)
  residual = (a - target) ** 2 @ spectrum.reshape(-1)
  return residual.reshape(len(tasks), -1).sum(-1) / spectrum[np.asarray(tasks)].sum(-1)


def masked_loss(outputs: jax.Array, targets: jax.Array, tasks: jax.Array,
                num_tasks: int) -> jax.Array:
  """Training loss: mean over the batch of the squared error of each example's own head."""
  err = per_task_squared_error(outputs, targets, num_tasks)
  return jnp.sum(err * jax.nn.one_hot(tasks, num_tasks, dtype=err.dtype)) / err.shape[0]
