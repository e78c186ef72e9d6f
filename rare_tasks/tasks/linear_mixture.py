"""The linear-regression task mixture of the study (PAPER.md section 2).

K tasks own mutually orthogonal blocks of m features in R^d, d = K * m. Every input carries every
task's features, x = sum_k B_k z_k with z_k ~ N(0, diag(lambda_k)) and lambda_{k,j} = j^(-beta_k).
Each example belongs to one task (drawn with the mixture probabilities pi) and its target is its
own task's block, y = z_k = B_k^T x.

Sampling is pure JAX so that it runs on the device inside the train step. The inputs of a step
depend only on the data stream (seed and spectrum), not on the mixture: cells that differ only in
frequency share them (common random numbers), and each cell draws its example's task from one
shared uniform through its own cumulative mixture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

BASES = ("rotation", "axis")
# "top": lambda_{k,j} = j^(-beta_k), every task's top eigenvalue 1. "trace": each task's spectrum
# scaled to unit trace, so every task has the same total variance and a complex (slowly decaying)
# task has less per feature.
SPECTRUM_NORMALIZATIONS = ("top", "trace")


@dataclasses.dataclass(frozen=True)
class LinearMixture:
  """A linear task mixture; its geometry is fixed by `basis` and `basis_seed`.

  Attributes:
    num_tasks: K, the number of tasks.
    block_size: m, the number of features of each task.
    num_rare: how many of the tasks are rare; they are the last `num_rare` task indices.
    basis: "rotation" (a random rotation Q of R^d) or "axis" (Q = identity, for reading neurons).
    basis_seed: seed of the random rotation; the task geometry is fixed across grid seeds.
    spectrum_normalization: "top" or "trace" (SPECTRUM_NORMALIZATIONS).
  """

  num_tasks: int
  block_size: int
  num_rare: int = 1
  basis: str = "rotation"
  basis_seed: int = 0
  spectrum_normalization: str = "top"

  @property
  def input_dim(self) -> int:
    return self.num_tasks * self.block_size

  @property
  def rare_tasks(self) -> tuple[int, ...]:
    return tuple(range(self.num_tasks - self.num_rare, self.num_tasks))

  def basis_matrix(self) -> np.ndarray:
    """Q, shape (d, d): column k * m + j is feature j of task k (the columns of B_k)."""
    d = self.input_dim
    if self.basis == "axis":
      return np.eye(d, dtype=np.float32)
    rng = np.random.default_rng(self.basis_seed)
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    # Sign fix makes Q Haar-distributed and independent of the QR implementation's conventions.
    return (q * np.sign(np.diag(r))).astype(np.float32)

  def betas(self, beta: float | Sequence[float]) -> np.ndarray:
    """Every task's beta, shape (K,), from one value or one per task."""
    return np.broadcast_to(np.asarray(beta, dtype=np.float64), (self.num_tasks,))

  def spectrum(self, beta: float | Sequence[float]) -> np.ndarray:
    """lambda_{k,j} = j^(-beta_k), shape (K, m), each row divided by its sum under "trace"
    normalisation. `beta` is one value or one per task."""
    betas = self.betas(beta)
    j = np.arange(1, self.block_size + 1, dtype=np.float64)
    spectrum = j[None, :] ** (-betas[:, None])
    if self.spectrum_normalization == "trace":
      spectrum = spectrum / spectrum.sum(-1, keepdims=True)
    return spectrum

  def mixture(self, rare_frequency: float, common_exponent: float) -> np.ndarray:
    """Task probabilities pi, shape (K,).

    Each rare task has probability `rare_frequency`; the common tasks k = 0..K-R-1 share the rest
    in proportion to (k + 1)^(-common_exponent).
    """
    num_common = self.num_tasks - self.num_rare
    weights = np.arange(1, num_common + 1, dtype=np.float64) ** (-common_exponent)
    common = weights / weights.sum() * (1.0 - self.num_rare * rare_frequency)
    return np.concatenate([common, np.full(self.num_rare, rare_frequency)])

  def covariances(self, beta: float | Sequence[float]) -> np.ndarray:
    """C_k = B_k diag(lambda_k) B_k^T for every task, shape (K, d, d)."""
    q = self.basis_matrix().astype(np.float64)
    lam = self.spectrum(beta)
    m = self.block_size
    blocks = [q[:, k * m:(k + 1) * m] for k in range(self.num_tasks)]
    return np.stack([b @ np.diag(spec) @ b.T for b, spec in zip(blocks, lam)])


def feature_indices(tasks: Sequence[int], block_size: int) -> np.ndarray:
  """The feature (column) indices of the given tasks' blocks, task by task, shape (len * m,)."""
  return np.concatenate([np.arange(k * block_size, (k + 1) * block_size) for k in tasks])


def sample_inputs(key: jax.Array, basis: jax.Array, sqrt_spectrum: jax.Array,
                  batch_size: int) -> tuple[jax.Array, jax.Array]:
  """Draws one batch of inputs and all tasks' targets.

  Args:
    key: PRNG key of the data stream at this step.
    basis: Q, shape (d, d).
    sqrt_spectrum: sqrt(lambda) flattened task-major, shape (d,).
    batch_size: B.

  Returns:
    x, shape (B, d), and z, shape (B, d): z[:, k*m:(k+1)*m] is task k's target z_k.
  """
  z = jax.random.normal(key, (batch_size, basis.shape[0])) * sqrt_spectrum
  return z @ basis.T, z


def sample_task_uniforms(key: jax.Array, batch_size: int) -> jax.Array:
  """One uniform per example, shape (B,), shared by every cell of a data stream."""
  return jax.random.uniform(key, (batch_size,))


def assign_tasks(uniforms: jax.Array, mixture: jax.Array) -> jax.Array:
  """Task of each example by inverse CDF: uniforms (B,), mixture (K,) -> task ids (B,) int32."""
  cdf = jnp.cumsum(mixture)
  tasks = jnp.sum(uniforms[:, None] >= cdf[None, :], axis=-1)
  return jnp.minimum(tasks, mixture.shape[0] - 1).astype(jnp.int32)
