"""Where an update pushes the first-layer MLP neurons a task needs: the gradient of one training
batch split into its injected-task part and its ordinary-text part, each compared with the
task's own gradient on the neurons that matter most to the task (docs/language_models.md, "The
mechanism").

Definitions, per member and update (the batch of update t, the parameters after t updates):
  - the task loss: the mean LABEL cross-entropy after TOK1 TOK2 over all p^2 instances of a task
    (train and test), as the task evaluation computes it; g_r its gradient;
  - a first-layer MLP neuron i: column i of the gate and up kernels and row i of the down kernel
    of layer 0; its magnitude under g_r the norm of those three slices; the support: the top-K
    neurons by magnitude, K = max(1, round(fraction x MLP width)) for each fraction of `top_k`,
    3 x d_model x K coordinates;
  - the batch loss of the update (cross-entropy plus z-loss, before clipping), normalised by the
    count of all target tokens of the batch, split by masks: g_t from the targets inside an
    injected instance (TOK2, LABEL and the EOS after it), g_nt from every other target (the text
    after the instance included), so that g = g_t + g_nt exactly; both come from one vmap over
    the two masks, which shares the forward pass;
  - cos(g, g_r), cos(g_t, g_r), cos(g_nt, g_r) on the support, and the three norms on it; beside
    them cos(update, g_r) for the AdamW update the optimizer applies (after clipping, momentum
    and weight decay), since parameters move along updates, not gradients;
  - the null: cos(g_nt, r) for a random Gaussian direction r on the same support. A random
    cosine in n dimensions has spread 1/sqrt(n), and the support grows with width, so a smaller
    cosine at a larger size means something only against its own null.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rare_tasks.lm import model as lm_model
from rare_tasks.lm.tasks import PREFIX, Task

# Targets of an injected row that belong to the instance: TOK2, LABEL and EOS follow TOK1.
TASK_TARGETS = 3
# The values `decompose` returns, each (tasks, len(top_k)) per member.
COSINES = ("cos_g_gr", "cos_gt_gr", "cos_gnt_gr", "cos_update_gr", "null_cos_gnt_gr")
NORMS = ("norm_g", "norm_gt", "norm_gnt")


def support_sizes(fractions: Sequence[float], width: int) -> tuple[int, ...]:
  """K per fraction of the MLP width: max(1, round(fraction x width)), at most the width."""
  return tuple(min(width, max(1, int(round(f * width)))) for f in fractions)


def first_mlp(tree: lm_model.Params) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The first layer's gate (d, H), up (d, H) and down (H, d) kernels of a parameter-shaped
  tree."""
  mlp = tree["layers"]["mlp"]
  return mlp["gate"]["kernel"][0], mlp["up"]["kernel"][0], mlp["down"]["kernel"][0]


def neuron_magnitudes(tree: lm_model.Params) -> jax.Array:
  """(H,): per first-layer MLP neuron, the norm of its gate and up columns and its down row."""
  gate, up, down = first_mlp(tree)
  return jnp.sqrt(jnp.sum(gate ** 2, 0) + jnp.sum(up ** 2, 0) + jnp.sum(down ** 2, 1))


def on_support(tree: lm_model.Params, neurons: jax.Array) -> jax.Array:
  """The coordinates of `neurons` (K,) in a parameter-shaped tree, flat (3 x d x K,)."""
  gate, up, down = first_mlp(tree)
  return jnp.concatenate([gate[:, neurons].ravel(), up[:, neurons].ravel(),
                          down[neurons, :].ravel()])


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
  """a.b / (|a| |b|) in float32; 0 where either vector is zero."""
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  den = jnp.linalg.norm(a) * jnp.linalg.norm(b)
  return jnp.where(den > 0, jnp.dot(a, b) / jnp.where(den > 0, den, 1.0), 0.0)


def task_mask(injected: jax.Array, seq_len: int) -> jax.Array:
  """(B, T) bool: the targets inside an injected instance, from a member's injected rows (B, 4)
  (negative where a row is not injected): TOK2, LABEL and EOS at targets 0, 1 and 2."""
  rows = injected[:, 0] >= 0
  return rows[:, None] & (jnp.arange(seq_len) < TASK_TARGETS)[None, :]


def masked_gradients(model: lm_model.Model, params: lm_model.Params, tokens: jax.Array,
                     mask: jax.Array, z_loss: float) -> tuple[lm_model.Params, lm_model.Params]:
  """(g_t, g_nt): the gradients of the batch loss over tokens (B, T+1) restricted to the targets
  in `mask` (B, T) and to the others, each normalised by all B x T targets; one forward pass,
  the two backward passes vmapped over the masks."""
  x, y = tokens[:, :-1], tokens[:, 1:]
  masks = jnp.stack([mask, ~mask]).astype(jnp.float32)

  def part(p, w):
    return lm_model.loss(model.apply(p, x), y, z_loss, w, normaliser=float(y.size))[0]

  grads = jax.vmap(jax.grad(part), in_axes=(None, 0))(params, masks)
  return jax.tree.map(lambda a: a[0], grads), jax.tree.map(lambda a: a[1], grads)


def task_gradient(model: lm_model.Model, params: lm_model.Params, prefixes: jax.Array,
                  labels: jax.Array, weights: jax.Array) -> lm_model.Params:
  """g_r: the gradient of the weighted mean LABEL cross-entropy after prefixes (N, PREFIX) with
  labels (N,) (weights (N,): 1 for an instance, 0 for padding)."""
  def task_loss(p):
    logits = model.apply(p, prefixes)[:, -1]
    ce, _ = lm_model.token_losses(logits, labels)
    return jnp.sum(ce * weights) / jnp.maximum(jnp.sum(weights), 1.0)
  return jax.grad(task_loss)(params)


def decompose(model: lm_model.Model, tx: optax.GradientTransformation, z_loss: float,
              sizes: Sequence[int], params: lm_model.Params, opt: optax.OptState,
              tokens: jax.Array, mask: jax.Array, prefixes: jax.Array, labels: jax.Array,
              weights: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
  """One member's decomposition of the update on tokens (B, T+1) against each task's direction.

  mask (B, T): its injected targets; prefixes (tasks, N, PREFIX), labels and weights (tasks, N):
  every instance of each task (padded with weight 0); sizes: the support sizes K. Returns each
  of COSINES and NORMS as (tasks, len(sizes)) float32, and "support_dim" (len(sizes),).
  """
  g_t, g_nt = masked_gradients(model, params, tokens, mask, z_loss)
  g = jax.tree.map(jnp.add, g_t, g_nt)
  update, _ = tx.update(g, opt, params)
  directions = jax.vmap(task_gradient, in_axes=(None, None, 0, 0, 0))(
      model, params, prefixes, labels, weights)
  largest = max(sizes)

  def one_task(g_r, task_key):
    order = jax.lax.top_k(neuron_magnitudes(g_r), largest)[1]
    out = {k: [] for k in (*COSINES, *NORMS)}
    for i, size in enumerate(sizes):
      neurons = order[:size]
      r, a, t, nt, u = (on_support(tree, neurons) for tree in (g_r, g, g_t, g_nt, update))
      null = jax.random.normal(jax.random.fold_in(task_key, i), r.shape, jnp.float32)
      for name, value in (("cos_g_gr", cosine(a, r)), ("cos_gt_gr", cosine(t, r)),
                          ("cos_gnt_gr", cosine(nt, r)), ("cos_update_gr", cosine(u, r)),
                          ("null_cos_gnt_gr", cosine(nt, null)), ("norm_g", jnp.linalg.norm(a)),
                          ("norm_gt", jnp.linalg.norm(t)), ("norm_gnt", jnp.linalg.norm(nt))):
        out[name].append(value)
    return {k: jnp.stack(v) for k, v in out.items()}

  keys = jax.random.split(key, prefixes.shape[0])
  out = jax.vmap(one_task)(directions, keys)
  d = params["layers"]["mlp"]["gate"]["kernel"].shape[1]
  out["support_dim"] = jnp.asarray([3 * d * s for s in sizes], jnp.int32)
  return out


def task_instances(task_list: Sequence[Task]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Every instance of each task, padded to the largest: prefixes (tasks, N, PREFIX), labels
  (tasks, N) int32 and weights (tasks, N) float32 (0 on padding)."""
  n = max(len(t.instances) for t in task_list)
  prefixes = np.zeros((len(task_list), n, PREFIX), np.int32)
  labels = np.zeros((len(task_list), n), np.int32)
  weights = np.zeros((len(task_list), n), np.float32)
  for i, t in enumerate(task_list):
    k = len(t.instances)
    prefixes[i, :k], labels[i, :k], weights[i, :k] = (t.instances[:, :PREFIX],
                                                      t.instances[:, PREFIX], 1.0)
  return prefixes, labels, weights

