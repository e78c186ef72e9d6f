"""Tests of rare_tasks/analysis/interference.py: per-task gradients, cosines, the rare-task
overwrite."""

from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rare_tasks.analysis import interference
from rare_tasks.core.optimizers import make_optimizer
from rare_tasks.synthetic import ensemble
from rare_tasks.synthetic.models import EncoderHeads
from rare_tasks.synthetic.tasks import LinearMixture, linear_measures, linear_mixture

K, M, N, NS = 3, 2, 4, 16  # tasks, block size, width, examples per task

# Jitted once per shape: one compile instead of one dispatch compile per op.
_cosine_matrix = jax.jit(interference.cosine_matrix)
_measures = jax.jit(interference.interference_measures)


def _spec(activation="identity", num_hidden_layers=0):
  task = LinearMixture(K, M, basis_seed=1)
  model = EncoderHeads(N, K, M, activation=activation, num_hidden_layers=num_hidden_layers)
  return ensemble.EnsembleSpec(model, task, ensemble.TrainSpec(steps=100, batch_size=8))


def _params_and_batches(spec, seed=0):
  """Random params with non-zero heads, and task t's examples at index t: x (K, NS, d), z."""
  task = spec.task
  heads = np.random.default_rng(seed).standard_normal((N, K * M)).astype(np.float32)

  @jax.jit
  def make(heads):
    params = spec.model.init(jax.random.key(seed), task.input_dim)
    params["heads"]["kernel"] = heads
    sqrt_spectrum = jnp.sqrt(jnp.asarray(task.spectrum([0.5, 1.0, 1.5]), jnp.float32))
    x, z = linear_mixture.sample_inputs(jax.random.key(seed + 100),
                                        jnp.asarray(task.basis_matrix()),
                                        sqrt_spectrum.reshape(-1), K * NS)
    return params, (x.reshape(K, NS, -1), z.reshape(K, NS, -1))

  return make(jnp.asarray(heads))


def test_per_task_gradients_match_loop_and_masked_reference():
  spec = _spec("relu", num_hidden_layers=1)
  params, batches = _params_and_batches(spec)
  loss_fn = partial(ensemble.task_loss, spec)
  # The reference: the whole batch concatenated, the loss masked to task t's examples.
  owner = jnp.repeat(jnp.arange(K), NS)

  def masked_loss(p, t, batch):
    _, y = spec.model.apply(p, batch[0])
    err = linear_measures.per_task_squared_error(y, batch[1], K)[:, t]
    mask = owner == t
    return jnp.sum(jnp.where(mask, err, 0.0)) / mask.sum()

  @jax.jit  # one compile for all three methods
  def three_ways(params, batches):
    vmapped = interference.per_task_gradients(loss_fn, params, batches)
    loop = [jax.grad(loss_fn)(params, t, (batches[0][t], batches[1][t])) for t in range(K)]
    loop = jax.tree.map(lambda *g: jnp.stack(g), *loop)
    whole = (batches[0].reshape(K * NS, -1), batches[1].reshape(K * NS, -1))
    naive = interference.per_task_gradients_naive(masked_loss, params, whole, K)
    return vmapped, loop, naive

  vmapped, loop, naive = three_ways(params, batches)
  chex.assert_shape(vmapped["encoder"]["kernel"], (K, K * M, N))
  chex.assert_shape(vmapped["heads"]["kernel"], (K, N, K * M))
  chex.assert_trees_all_close(vmapped, loop, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(vmapped, naive, rtol=1e-5, atol=1e-6)
  # Tasks differ: the gradients are not all the same.
  assert not np.allclose(vmapped["encoder"]["kernel"][0], vmapped["encoder"]["kernel"][1])


def test_per_task_gradients_of_linear_model_closed_form():
  spec = _spec()
  params, (xs, zs) = _params_and_batches(spec, seed=3)
  grads = jax.jit(partial(interference.per_task_gradients, partial(ensemble.task_loss, spec)))(
      params, (xs, zs))
  e = np.asarray(params["encoder"]["kernel"], np.float64)  # (d, N)
  h = np.asarray(params["heads"]["kernel"], np.float64)  # (N, K*m)
  for k in range(K):
    x, z = np.asarray(xs[k], np.float64), np.asarray(zs[k], np.float64)
    cols = slice(k * M, (k + 1) * M)
    hk, zk = h[:, cols], z[:, cols]
    residual = x @ e @ hk - zk
    d_e = 2 / NS * x.T @ residual @ hk.T
    d_h = np.zeros_like(h)
    d_h[:, cols] = 2 / NS * (x @ e).T @ residual
    np.testing.assert_allclose(grads["encoder"]["kernel"][k], d_e, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads["heads"]["kernel"][k], d_h, rtol=1e-4, atol=1e-5)
    assert np.abs(d_e).max() > 1e-2


def test_cosine_matrix_matches_numpy_and_zero_gradient_is_nan():
  rng = np.random.default_rng(5)
  flat = rng.standard_normal((5, 12)).astype(np.float32)
  flat[1] = -2.5 * flat[0]  # anti-parallel
  cos, norms = _cosine_matrix(jnp.asarray(flat))
  cos, norms = np.asarray(cos), np.asarray(norms)
  f = flat.astype(np.float64)
  expected_norms = np.linalg.norm(f, axis=1)
  np.testing.assert_allclose(norms, expected_norms, rtol=1e-5)
  np.testing.assert_allclose(cos, f @ f.T / np.outer(expected_norms, expected_norms),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(cos, cos.T)
  np.testing.assert_allclose(np.diag(cos), 1.0, rtol=1e-6)
  np.testing.assert_allclose(cos[0, 1], -1.0, rtol=1e-6)
  assert np.abs(cos).max() <= 1.0

  flat[3] = 0.0
  cos, norms = _cosine_matrix(jnp.asarray(flat))
  cos = np.asarray(cos)
  assert norms[3] == 0
  assert np.isnan(cos[3]).all() and np.isnan(cos[:, 3]).all()
  keep = [0, 1, 2, 4]
  assert np.isfinite(cos[np.ix_(keep, keep)]).all()


def _random_grads(seed, num_tasks=4):
  rng = np.random.default_rng(seed)
  return {"encoder": {"kernel": jnp.asarray(rng.standard_normal((num_tasks, 6, 3)), jnp.float32)},
          "hidden_0": {"kernel": jnp.asarray(rng.standard_normal((num_tasks, 3, 3)), jnp.float32)}}


def _flat(grads):
  return np.concatenate([np.asarray(grads["encoder"]["kernel"], np.float64).reshape(4, -1),
                         np.asarray(grads["hidden_0"]["kernel"], np.float64).reshape(4, -1)], 1)


def test_interference_measures_match_numpy():
  grads = _random_grads(6)
  pi = np.array([0.5, 0.3, 0.15, 0.05])
  rare = np.array([False, False, False, True])
  out = _measures(grads, jnp.asarray(pi, jnp.float32), jnp.asarray(rare))
  g = _flat(grads)
  common = pi[:3] @ g[:3]
  np.testing.assert_allclose(out["common_grad_norm"], np.linalg.norm(common), rtol=1e-5)
  np.testing.assert_allclose(out["rare_grad_norm"], np.linalg.norm(g[3]), rtol=1e-5)
  np.testing.assert_allclose(out["common_rare_cosine"],
                             common @ g[3] / np.linalg.norm(common) / np.linalg.norm(g[3]),
                             rtol=1e-4, atol=1e-6)
  norms = np.linalg.norm(g, axis=1)
  np.testing.assert_allclose(out["grad_norm"], norms, rtol=1e-5)
  np.testing.assert_allclose(out["cosine"], g @ g.T / np.outer(norms, norms), rtol=1e-4, atol=1e-6)

  # Two rare tasks of equal frequency: the rare gradient is their mean.
  pi2 = np.array([0.6, 0.3, 0.05, 0.05])
  rare2 = np.array([False, False, True, True])
  out2 = _measures(grads, jnp.asarray(pi2, jnp.float32),
                                            jnp.asarray(rare2))
  np.testing.assert_allclose(out2["common_grad_norm"], np.linalg.norm(pi2[:2] @ g[:2]), rtol=1e-5)
  np.testing.assert_allclose(out2["rare_grad_norm"], np.linalg.norm(g[2:].mean(0)), rtol=1e-5)

  # A rare task without gradient has no direction: NaN cosine with the common gradient.
  zero_rare = jax.tree.map(lambda a: a.at[3].set(0.0), grads)
  out3 = _measures(zero_rare, jnp.asarray(pi, jnp.float32),
                                            jnp.asarray(rare))
  assert float(out3["rare_grad_norm"]) == 0.0 and np.isnan(out3["common_rare_cosine"])


def test_rare_overwrite_with_sgd_is_minus_lr_times_inner_product():
  grads = _random_grads(7)
  pi = np.array([0.5, 0.3, 0.15, 0.05])
  rare = np.array([False, False, False, True])
  params = jax.tree.map(lambda a: jnp.zeros(a.shape[1:]), grads)
  lr = 0.03
  sgd = optax.sgd(lr)
  out = interference.rare_overwrite(grads, jnp.asarray(pi, jnp.float32), jnp.asarray(rare), sgd,
                                    sgd.init(params), params)
  g = _flat(grads)
  expected = -lr * (g[3] @ (pi[:3] @ g[:3]))
  assert abs(expected) > 1e-3
  np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_rare_overwrite_with_adam_matches_finite_difference_of_rare_loss():
  spec = _spec()
  params, batches = _params_and_batches(spec, seed=8)
  rare_task = spec.task.rare_tasks[0]
  pi = jnp.asarray(spec.task.mixture(0.05, 1.0), jnp.float32)
  rare = jnp.asarray(ensemble.rare_mask(spec.task))
  lr = 1e-4
  adam = make_optimizer("adam", lr, "constant", 100, 0, 0.0, 0.0)
  loss_fn = partial(ensemble.task_loss, spec)

  @jax.jit
  def run(params, batches):
    grads = interference.per_task_gradients(loss_fn, params, batches)
    # A state with history: Adam's moments after a few updates from other gradients.
    opt_state = adam.init(params)
    for t in range(3):
      _, opt_state = adam.update(jax.tree.map(lambda g, t=t: g[t] * (t + 1), grads), opt_state,
                                 params)
    overwrite = interference.rare_overwrite(grads, pi, rare, adam, opt_state, params)
    common = jax.tree.map(lambda g: jnp.tensordot(jnp.where(rare, 0.0, pi), g, axes=1), grads)
    updates, _ = adam.update(common, opt_state, params)
    momentum_only, _ = adam.update(jax.tree.map(jnp.zeros_like, common), opt_state, params)
    # The step the common gradient causes: the optimiser's update minus what momentum alone does.
    step = jax.tree.map(lambda u, u0: u - u0, updates, momentum_only)
    rare_batch = (batches[0][rare_task], batches[1][rare_task])
    before = loss_fn(params, rare_task, rare_batch)
    after = loss_fn(optax.apply_updates(params, step), rare_task, rare_batch)
    with_momentum = loss_fn(optax.apply_updates(params, updates), rare_task, rare_batch)
    sgd_like = -lr * sum(jnp.vdot(g[rare_task], c) for g, c in
                         zip(jax.tree.leaves(grads), jax.tree.leaves(common)))
    return overwrite, after - before, sgd_like, with_momentum - before

  with jax.default_matmul_precision("highest"):
    overwrite, change, sgd_like, full = run(params, batches)
  assert abs(float(change)) > 1e-5
  np.testing.assert_allclose(overwrite, change, rtol=0.03)
  # Adam's step is not the plain gradient step: the measure uses the optimiser's own update.
  assert abs(float(sgd_like) - float(change)) > 0.2 * abs(float(change))
  # Nor the whole update: the momentum of earlier steps is not the common tasks' doing.
  assert abs(float(full) - float(change)) > 0.2 * abs(float(change))


def test_gradient_strength_is_relative_to_the_running_peak():
  np.testing.assert_allclose(
      interference.gradient_strength([0.0, 2.0, 1.0, 4.0, 1.0, np.nan, 0.5]),
      [np.nan, 1.0, 0.5, 1.0, 0.25, np.nan, 0.125])
  # The same run at any scale has the same strength: a unit-free measure.
  norms = np.array([0.0, 0.3, 0.6, 0.2, 0.05])
  np.testing.assert_allclose(interference.gradient_strength(1e-4 * norms),
                             interference.gradient_strength(norms))
  assert interference.gradient_strength([]).shape == (0,)
