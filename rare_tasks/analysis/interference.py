"""Gradient interference between tasks (docs/science.md, "The gradient fact" and "Measurements").

Per-task gradients come from one compiled call: each task's loss is taken on its own examples
(a balanced batch, task t's examples at index t of a leading axis), and `jax.vmap` of `jax.grad`
over the tasks runs every task's forward and backward pass on its own T-th of the batch, so all T
gradients together cost about one backward pass over the batch. The reference method takes one
backward pass over the whole batch per task, with the loss masked to that task.

From the gradients: the T x T cosine matrix and each task's gradient norm on the shared
parameters, the common-task gradient (the frequency-weighted sum of the common tasks' gradients,
the common part of an expected training batch), the rare-task gradient (per rare example), their
cosine, and the overwrite: the first-order change of the rare task's loss caused by the common
tasks' part of an optimiser step, taken by the run's own optimiser from its current state. On the
host, a run's gradient norms become unit-free strengths relative to their running peak.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

# loss_fn(params, task index, that task's batch) -> scalar loss of the task on its examples.
TaskLoss = Callable[[Any, jax.Array, Any], jax.Array]
# masked_loss_fn(params, task index, the whole batch) -> scalar loss of that task's examples.
MaskedTaskLoss = Callable[[Any, int, Any], jax.Array]


def per_task_gradients(loss_fn: TaskLoss, params: Any, task_batches: Any) -> Any:
  """Gradients of every task's loss: a params-shaped tree whose leaves have a leading T axis.

  task_batches: a tree whose leaves have a leading axis T; entry t holds task t's examples.
  """
  num_tasks = jax.tree.leaves(task_batches)[0].shape[0]
  return jax.vmap(jax.grad(loss_fn), in_axes=(None, 0, 0))(
      params, jnp.arange(num_tasks), task_batches)


def per_task_gradients_naive(masked_loss_fn: MaskedTaskLoss, params: Any, batch: Any,
                             num_tasks: int) -> Any:
  """The reference method: one backward pass over the whole batch per task (leading T axis)."""
  grads = [jax.grad(masked_loss_fn)(params, t, batch) for t in range(num_tasks)]
  return jax.tree.map(lambda *g: jnp.stack(g), *grads)


def flatten_tasks(grads: Any) -> jax.Array:
  """A tree of per-task gradients (leading T axis) as one (T, P) matrix."""
  leaves = jax.tree.leaves(grads)
  return jnp.concatenate([g.reshape(g.shape[0], -1) for g in leaves], axis=1)


def cosine_matrix(flat: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(cosines (T, T), norms (T,)) of T flattened gradients (T, P).

  A task with an exactly zero gradient (for example every task at initialisation, when the
  heads are zero) has no direction: its row and column are NaN.
  """
  gram = flat @ flat.T
  norms = jnp.sqrt(jnp.maximum(jnp.diag(gram), 0.0))
  safe = jnp.where(norms > 0, norms, 1.0)
  cos = gram / (safe[:, None] * safe[None, :])
  valid = (norms[:, None] > 0) & (norms[None, :] > 0)
  return jnp.where(valid, jnp.clip(cos, -1.0, 1.0), jnp.nan), norms


def _weighted_sum(weights: jax.Array, tree: Any) -> Any:
  return jax.tree.map(lambda g: jnp.tensordot(weights, g, axes=1), tree)


def _split_weights(task_frequencies: jax.Array, rare: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Weights of the common-task gradient (the frequencies) and of the mean rare gradient."""
  common = jnp.where(rare, 0.0, task_frequencies)
  rare_w = jnp.where(rare, task_frequencies, 0.0)
  return common, rare_w / jnp.maximum(rare_w.sum(), 1e-30)


def interference_measures(shared_grads: Any, task_frequencies: jax.Array,
                          rare: jax.Array) -> dict[str, jax.Array]:
  """Interference on the shared parameters from per-task gradients (leading T axis).

  task_frequencies pi (T,); rare (T,) bool. Returns cosine (T, T), grad_norm (T,), and the
  scalars common_grad_norm, rare_grad_norm and common_rare_cosine (NaN if either is zero).
  """
  flat = flatten_tasks(shared_grads)
  cos, norms = cosine_matrix(flat)
  w_common, w_rare = _split_weights(task_frequencies, rare)
  common = w_common @ flat
  rare_g = w_rare @ flat
  cn, rn = jnp.linalg.norm(common), jnp.linalg.norm(rare_g)
  cr = jnp.where((cn > 0) & (rn > 0), common @ rare_g / jnp.maximum(cn * rn, 1e-30), jnp.nan)
  return {"cosine": cos, "grad_norm": norms, "common_grad_norm": cn, "rare_grad_norm": rn,
          "common_rare_cosine": cr}


def rare_overwrite(grads: Any, task_frequencies: jax.Array, rare: jax.Array,
                   optimizer: optax.GradientTransformation, opt_state: Any,
                   params: Any) -> jax.Array:
  """First-order change of the rare loss caused by the common tasks' part of an optimiser step.

  grads: per-task gradients of all parameters (leading T axis). The common tasks' step is what
  the common-task gradient adds to the optimiser's update from its current state (second
  moments, schedule position): update(g_common) - update(0), so that the momentum the state
  carries from earlier steps is left out. For SGD it is -lr g_common. The change is
  <grad of the mean rare-task loss, that step>; positive: the common tasks raise the rare loss
  (overwrite it).
  """
  w_common, w_rare = _split_weights(task_frequencies, rare)
  common = _weighted_sum(w_common, grads)
  rare_g = _weighted_sum(w_rare, grads)
  with_common, _ = optimizer.update(common, opt_state, params)
  without, _ = optimizer.update(jax.tree.map(jnp.zeros_like, common), opt_state, params)
  return sum(jnp.vdot(g, u - u0) for g, u, u0 in zip(
      jax.tree.leaves(rare_g), jax.tree.leaves(with_common), jax.tree.leaves(without)))


def gradient_strength(norms: np.ndarray) -> np.ndarray:
  """A gradient norm relative to its largest value so far: norms (steps,) in step order -> the
  same shape, norms[t] / max(norms[:t + 1]); NaN while that maximum is zero or not finite.

  A unit-free measure of how much of its strongest gradient a run still has, comparable across
  models whose parameterisations give gradients of different scales. The reference is the
  running peak and not the value at initialisation because an encoder with zero-initialised
  heads gets no gradient from any task at step 0.
  """
  norms = np.asarray(norms, dtype=np.float64)
  peak = np.fmax.accumulate(np.where(np.isnan(norms), -np.inf, norms)) if len(norms) else norms
  ok = np.isfinite(peak) & (peak > 0)
  return np.where(ok, norms / np.where(ok, peak, 1.0), np.nan)
