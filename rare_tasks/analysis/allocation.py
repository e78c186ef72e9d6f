"""Neuron allocation: how the neurons of a model's last hidden layer are divided among tasks.

Two measures (docs/science.md, "Measurements"), both a (N, K) matrix of shares whose rows sum
to one:
- linear encoders: the lambda-weighted share of neuron i's input weights (through the whole
  linear encoder) that lies in task k's block: the fraction of the neuron's pre-activation
  variance that task k's features cause;
- any encoder: the increase of task k's FVU when neuron i is ablated (its output set to zero),
  for every neuron at once from one forward pass, normalised over the tasks it serves.
Per task, the effective number of neurons is the sum of its shares over neurons, and a neuron is
dominated by a task holding more than half of its share.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# A neuron is dominated by the task holding more than this share of it.
DOMINANT_SHARE = 0.5


def linear_shares(encoder_map: jax.Array, basis: jax.Array, spectrum: jax.Array) -> jax.Array:
  """Shares of a linear encoder: encoder_map W (N, d), basis Q (d, d), spectrum (K, m) -> (N, K).

  share_ik = sum_j lambda_kj (w_i . q_kj)^2 / sum_{k', j} lambda_k'j (w_i . q_k'j)^2. A neuron
  with no input weight at all has no share (a zero row).
  """
  num_tasks, block = spectrum.shape
  weight = (encoder_map @ basis) ** 2 * spectrum.reshape(-1)
  per_task = weight.reshape(weight.shape[0], num_tasks, block).sum(-1)
  total = per_task.sum(-1, keepdims=True)
  return jnp.where(total > 0, per_task / jnp.where(total > 0, total, 1.0), 0.0)


def ablation_increase(hidden: jax.Array, outputs: jax.Array, targets: jax.Array,
                      heads: jax.Array, spectrum: jax.Array) -> jax.Array:
  """Increase of every task's FVU when each last-layer neuron is ablated, shape (N, K).

  hidden h (B, N), outputs y = h H (B, K*m), targets (B, K*m), heads kernel H (N, K*m),
  spectrum (K, m). The heads are linear, so ablating neuron i changes the outputs by exactly
  -h_i H_i and the change of the squared error is closed form:
  ||r - h_i H_i||^2 - ||r||^2 = -2 h_i <r, H_i> + h_i^2 ||H_i||^2 with r = y - z, per task block.
  """
  num_tasks, block = spectrum.shape
  batch, width = hidden.shape
  residual = outputs - targets
  cross = (hidden.T @ residual / batch) * heads  # (N, K*m): mean h_i r times H_i
  power = jnp.mean(hidden ** 2, axis=0)[:, None] * heads ** 2
  increase = (power - 2 * cross).reshape(width, num_tasks, block).sum(-1)
  return increase / spectrum.sum(-1)


def ablation_shares(increase: jax.Array) -> jax.Array:
  """Shares from ablation increases (N, K): the positive part, normalised per neuron.

  A neuron whose ablation hurts no task (a dead or unused neuron) serves none: a zero row.
  """
  positive = jnp.maximum(increase, 0.0)
  total = positive.sum(-1, keepdims=True)
  return jnp.where(total > 0, positive / jnp.where(total > 0, total, 1.0), 0.0)


def task_neurons(shares: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per task: (effective neurons = sum of shares (K,), neurons it dominates (K,))."""
  return shares.sum(0), (shares > DOMINANT_SHARE).sum(0).astype(jnp.float32)
