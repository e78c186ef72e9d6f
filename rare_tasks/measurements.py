"""Per-task measurements of one model: fraction of variance unexplained and feature capture.

FVU_k = E||yhat_k - z_k||^2 / Tr(C_k), estimated on held-out samples (or exact for linear
models). Feature capture l_k(U) = Tr(P_U C_k) / Tr(C_k), U the row space of the (linear) encoder,
is exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def per_task_squared_error(outputs: jax.Array, targets: jax.Array, num_tasks: int) -> jax.Array:
  """Squared error of every head on every example: (B, K*m), (B, K*m) -> (B, K)."""
  err = (outputs - targets) ** 2
  return err.reshape(err.shape[0], num_tasks, -1).sum(-1)


def fvu(outputs: jax.Array, targets: jax.Array, spectrum: jax.Array) -> jax.Array:
  """Per-task FVU on a sample: outputs and targets (B, K*m), spectrum lambda (K, m) -> (K,)."""
  mse = per_task_squared_error(outputs, targets, spectrum.shape[0]).mean(0)
  return mse / spectrum.sum(-1)


def feature_capture(encoder_map: np.ndarray, basis: np.ndarray, spectrum: np.ndarray,
                    rtol: float = 1e-5) -> np.ndarray:
  """l_k(U) per task: encoder_map (..., N, d), basis columns (d, K*m), spectrum (..., K, m)
  -> (..., K).

  U is the row space of `encoder_map`; directions with singular value below `rtol` times the
  largest do not count (they carry no signal to the heads). `basis` holds the feature directions
  of the K tasks measured (Q itself for all tasks, or some of its column blocks). Computed on the
  host in float64 from the eigendecomposition of the (N, N) Gram matrix W W^T, with
  ||P_U q||^2 = sum_i (u_i . W q)^2 / e_i over its kept eigenpairs (u_i, e_i): numpy, because a
  batched LAPACK call inside a multi-device CPU program can deadlock jaxlib's shared thread pool.
  """
  encoder_map = np.asarray(encoder_map, np.float64)
  spectrum = np.asarray(spectrum, np.float64)
  # A diverged model (non-finite weights) has no row space: NaN capture, not a LinAlgError.
  finite = np.isfinite(encoder_map).all(axis=(-2, -1))
  encoder_map = np.where(finite[..., None, None], encoder_map, 0.0)
  gram = encoder_map @ np.swapaxes(encoder_map, -1, -2)
  e, u = np.linalg.eigh(gram)
  keep = e > (rtol ** 2) * e[..., -1:]
  inv = np.where(keep, 1.0 / np.where(keep, e, 1.0), 0.0)
  # Coordinates of W q_j on the eigenvectors, for every feature direction q_j.
  coords = np.swapaxes(u, -1, -2) @ (encoder_map @ np.asarray(basis, np.float64))
  captured = np.sum(coords ** 2 * inv[..., :, None], axis=-2)
  captured = captured.reshape(captured.shape[:-1] + spectrum.shape[-2:])
  capture = (captured * spectrum).sum(-1) / spectrum.sum(-1)
  return np.where(finite[..., None], capture, np.nan)


def population_fvu(encoder_map: jax.Array, heads: jax.Array, basis: jax.Array,
                   spectrum: jax.Array) -> jax.Array:
  """Exact per-task FVU of a linear model: encoder_map W (N, d), heads kernel H (N, K*m) -> (K,).

  With x = Q z, z ~ N(0, diag(lambda)), the prediction error is (H^T W Q - I) z, so task k's
  expected squared error is the lambda-weighted squared norm of its rows of H^T W Q - I.
  """
  a = heads.T @ encoder_map @ basis
  residual = (a - jnp.eye(a.shape[0], dtype=a.dtype)) ** 2 @ spectrum.reshape(-1)
  num_tasks = spectrum.shape[0]
  return residual.reshape(num_tasks, -1).sum(-1) / spectrum.sum(-1)


def masked_loss(outputs: jax.Array, targets: jax.Array, tasks: jax.Array,
                num_tasks: int) -> jax.Array:
  """Training loss: mean over the batch of the squared error of each example's own head."""
  err = per_task_squared_error(outputs, targets, num_tasks)
  return jnp.sum(err * jax.nn.one_hot(tasks, num_tasks, dtype=err.dtype)) / err.shape[0]
