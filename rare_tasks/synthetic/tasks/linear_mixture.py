"""The linear-regression task mixture of the study (docs/science.md, "Tasks, features and
frequencies").

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
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rare_tasks.analysis import allocation
from rare_tasks.synthetic.tasks import linear_measures
from rare_tasks.synthetic.tasks.linear_measures import feature_indices
from rare_tasks.synthetic.tasks.task_family import Arrays, TaskFamily, power_law_mixture
from rare_tasks.synthetic.theory import LinearTheory

BASES = ("rotation", "axis")
# "top": lambda_{k,j} = j^(-beta_k), every task's top eigenvalue 1. "trace": each task's spectrum
# scaled to unit trace, so every task has the same total variance and a complex (slowly decaying)
# task has less per feature.
SPECTRUM_NORMALIZATIONS = ("top", "trace")


@dataclasses.dataclass(frozen=True)
class LinearMixture(TaskFamily):
  """A linear task mixture; its geometry is fixed by `basis` and `basis_seed`.

  Per-task metric: FVU (its headline loss). It has the closed-form theory
  (rare_tasks.synthetic.theory), and a linear encoder's exact FVU, allocation shares and feature
  capture are read off its weights.

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

  loss_name: ClassVar[str] = "fvu"
  loss_label: ClassVar[str] = "FVU"
  metric_names: ClassVar[tuple[str, ...]] = ("fvu",)
  Theory: ClassVar[type] = LinearTheory
  complexity_name: ClassVar[str] = "beta"
  extra_metric_names: ClassVar[tuple[str, ...]] = ("feature_capture", "population_fvu")
  results_columns: ClassVar[tuple[str, ...]] = (
      "width", "rare_frequency", "seed", "task", "task_frequency", "beta", "fvu",
      "predicted_fvu", "feature_capture", "learned", "predicted_learned", "is_rare",
      "population_fvu", "critical_width", "learning_rate", "common_exponent", "activation",
      "num_hidden_layers", "cell", "step")
  config_fields: ClassVar[tuple[str, ...]] = ("num_tasks", "block_size", "num_rare", "basis",
                                              "basis_seed", "spectrum_normalization")
  models: ClassVar[tuple[str, ...]] = ("encoder_heads",)

  @property
  def input_dim(self) -> int:
    return self.num_tasks * self.block_size

  @property
  def output_dim(self) -> int:
    return self.num_tasks * self.block_size

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
    return power_law_mixture(self.num_tasks, self.num_rare, rare_frequency, common_exponent)

  # The task-family interface (synthetic.tasks.task_family). Constants: spectrum (K, m) per
  # data stream, basis Q (d, d) shared. Every input carries every task's features, so the inputs
  # do not depend on the tasks and every evaluation example measures every task.

  def stream_constants(self, values: dict[str, Any]) -> Arrays:
    return {"spectrum": self.spectrum(values["beta"]).astype(np.float32)}

  def shared_constants(self) -> Arrays:
    return {"basis": self.basis_matrix()}

  def complexity(self, values: dict[str, Any]) -> np.ndarray:
    return self.betas(values["beta"])

  def describe(self, values: dict[str, Any]) -> str:
    return (f"with {self.num_tasks} tasks of {self.block_size} features ({self.num_rare} rare, "
            f"common exponent {values['common_exponent']}, beta {values['beta']})")

  def sample(self, key: jax.Array, stream: Arrays, shared: Arrays,
             batch_size: int) -> jax.Array:
    """The draws of a batch: standard normals (B, d), one per feature, before the spectrum and
    the basis (`batch` applies them, so the normals are drawn once where both consume them)."""
    return jax.random.normal(key, (batch_size, self.input_dim))

  def batch(self, data, tasks, stream, shared):
    return inputs_of(data, shared["basis"], jnp.sqrt(stream["spectrum"]).reshape(-1))

  def loss(self, outputs, targets, tasks, stream, shared):
    return linear_measures.masked_loss(outputs, targets, tasks, self.num_tasks)

  def training_loss(self, model, params, inputs, targets, tasks, stream, shared):
    """`loss` computed through each example's own head only (B x N x m multiply-adds where all
    heads take B x N x K*m): the same value and gradients as the masked loss of every head."""
    own = model.own_outputs(params, inputs, tasks)
    return linear_measures.own_head_loss(own, targets, tasks, self.num_tasks)

  def task_metrics(self, outputs, targets, tasks, stream, shared):
    return {"fvu": linear_measures.fvu(outputs, targets, stream["spectrum"])}

  def ablation_increase(self, hidden, outputs, targets, tasks, heads, stream, shared):
    return allocation.ablation_increase(hidden, outputs, targets, heads, stream["spectrum"])

  # Measurements read off the weights of a linear encoder (rare_tasks.synthetic.tasks.task_family).

  def weight_metrics(self, model, params, stream, shared):
    """Exact population_fvu (K,) and the encoder map (N, d) of a linear encoder; NaN FVU for a
    nonlinear one."""
    if not model.is_linear:
      return {"population_fvu": jnp.full((self.num_tasks,), jnp.nan)}
    w = model.encoder_map(params)
    return {"population_fvu": self.exact_fvu(w, params["heads"]["kernel"], stream, shared),
            "encoder_map": w}

  def allocation_shares(self, model, params, hidden, outputs, targets, tasks, stream, shared):
    if not model.is_linear:
      return super().allocation_shares(model, params, hidden, outputs, targets, tasks, stream,
                                       shared)
    return self.linear_shares(model.encoder_map(params), stream, shared)

  def finish_metrics(self, metrics, stream, shared):
    """Feature capture (S, P, K) from the encoder map, which is not written (NaN without it)."""
    out = dict(metrics)
    encoder_map = out.pop("encoder_map", None)
    # In the metrics' own precision, like every other measurement in metrics.jsonl.
    out["feature_capture"] = np.full_like(out[self.loss_name], np.nan)
    if encoder_map is not None:
      out["feature_capture"][...] = self.feature_capture(encoder_map, stream, shared)
    return out

  def rare_trace(self, model, params, stream, shared):
    """The rare tasks' exact FVU (R,) and the encoder map (N, d): cheap enough every step."""
    w = model.encoder_map(params)
    fvu = self.exact_fvu(w, params["heads"]["kernel"], stream, shared, tasks=self.rare_tasks)
    return {"rare_fvu": fvu, "encoder_map": w}

  def finish_trace(self, trace, stream, shared):
    """rare_fvu and rare_capture, each (T, S, P, R), from the traced encoder maps."""
    capture = self.feature_capture(trace["encoder_map"], stream, shared, self.rare_tasks)
    return {"rare_fvu": np.asarray(trace["rare_fvu"]), "rare_capture": capture}

  def exact_fvu(self, encoder_map: jax.Array, heads: jax.Array, stream: Arrays, shared: Arrays,
                tasks: tuple[int, ...] | None = None) -> jax.Array:
    """Exact per-task FVU of a linear model (K,) (or of `tasks` only)."""
    return linear_measures.population_fvu(encoder_map, heads, shared["basis"],
                                          stream["spectrum"], tasks=tasks)

  def linear_shares(self, encoder_map: jax.Array, stream: Arrays, shared: Arrays) -> jax.Array:
    """Allocation shares of a linear encoder (N, K) (analysis.allocation.linear_shares)."""
    return allocation.linear_shares(encoder_map, shared["basis"], stream["spectrum"])

  def feature_capture(self, encoder_map: np.ndarray, stream: Arrays, shared: Arrays,
                      tasks: Sequence[int] | None = None) -> np.ndarray:
    """Host feature capture l_k(U): encoder_map (..., N, d), stream arrays with matching leading
    axes -> (..., K) (or (..., len(tasks)))."""
    tasks = range(self.num_tasks) if tasks is None else tasks
    cols = feature_indices(tasks, self.block_size)
    spectrum = np.asarray(stream["spectrum"])[..., list(tasks), :]
    return linear_measures.feature_capture(encoder_map, np.asarray(shared["basis"])[:, cols],
                                           spectrum)

  def covariances(self, beta: float | Sequence[float]) -> np.ndarray:
    """C_k = B_k diag(lambda_k) B_k^T for every task, shape (K, d, d)."""
    q = self.basis_matrix().astype(np.float64)
    lam = self.spectrum(beta)
    m = self.block_size
    blocks = [q[:, k * m:(k + 1) * m] for k in range(self.num_tasks)]
    return np.stack([b @ np.diag(spec) @ b.T for b, spec in zip(blocks, lam)])


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
  return inputs_of(jax.random.normal(key, (batch_size, basis.shape[0])), basis, sqrt_spectrum)


def inputs_of(normals: jax.Array, basis: jax.Array,
              sqrt_spectrum: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Inputs x = z Q^T (B, d) and targets z = normals * sqrt(lambda) (B, d) of standard normals
  (B, d); basis Q (d, d), sqrt_spectrum (d,)."""
  z = normals * sqrt_spectrum
  return z @ basis.T, z
