"""Tests of rare_tasks/core/optimizers.py: schedule values, first updates, traced per-member
rates."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rare_tasks.core import optimizers


def _factors(schedule, steps, total=10, warmup=0, final=0.0):
  return np.array([float(optimizers.schedule_factor(s, schedule, total, warmup, final))
                   for s in steps])


def test_constant_schedule():
  np.testing.assert_array_equal(_factors("constant", [0, 5, 100], warmup=3, final=0.1), 1.0)


def test_warmup_schedule():
  np.testing.assert_allclose(_factors("warmup", range(7), warmup=4),
                             [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0])
  # No warmup steps: full rate from the first step.
  np.testing.assert_allclose(_factors("warmup", [0, 3], warmup=0), [1.0, 1.0])


def test_cosine_schedule():
  f = _factors("cosine", [0, 5, 10, 20], total=10, final=0.1)
  # 0.1 + 0.9 * 0.5 * (1 + cos(pi * progress)).
  np.testing.assert_allclose(f, [1.0, 0.55, 0.1, 0.1], rtol=1e-6)
  np.testing.assert_allclose(_factors("cosine", [0, 10], total=10, final=0.0), [1.0, 0.0],
                             atol=1e-7)
  quarter = 0.5 * (1 + np.cos(np.pi / 4))
  np.testing.assert_allclose(_factors("cosine", [2], total=8, final=0.0), [quarter], rtol=1e-6)


def test_cosine_is_monotone():
  f = _factors("cosine", range(12), total=10, final=0.01)
  assert np.all(np.diff(f) <= 1e-7)


def test_warmup_cosine_schedule():
  f = _factors("warmup_cosine", [0, 1, 2, 6, 10, 11], total=10, warmup=2, final=0.1)
  # Warmup 0.5, 1; then cosine over the remaining 8 steps from 1 down to 0.1.
  np.testing.assert_allclose(f, [0.5, 1.0, 1.0, 0.55, 0.1, 0.1], rtol=1e-6)


def test_schedule_factor_under_jit_and_vmap():
  fn = jax.jit(jax.vmap(lambda s: optimizers.schedule_factor(s, "warmup_cosine", 10, 2, 0.1)))
  np.testing.assert_allclose(fn(jnp.array([0, 1, 6, 10])), [0.5, 1.0, 0.55, 0.1], rtol=1e-6)


def _first_update(name, lr, grads, params, schedule="constant", **kw):
  opt = optimizers.make_optimizer(name, lr, schedule, total_steps=10, **kw)
  state = opt.init(params)
  updates, _ = opt.update(grads, state, params)
  return optax.apply_updates(params, updates)


def _params():
  return {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.1, -0.2, 0.3])}


def _grads():
  return {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]]), "b": jnp.array([-3.0, 0.1, 1.0])}


def test_sgd_step_is_minus_lr_grad():
  params, grads = _params(), _grads()
  new = _first_update("sgd", 0.1, grads, params)
  expected = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
  chex.assert_trees_all_close(new, expected, rtol=1e-6)


def test_sgd_step_uses_schedule():
  params, grads = _params(), _grads()
  new = _first_update("sgd", 0.1, grads, params, schedule="warmup", warmup_steps=4)
  expected = jax.tree_util.tree_map(lambda p, g: p - 0.025 * g, params, grads)
  chex.assert_trees_all_close(new, expected, rtol=1e-6)


def test_sgd_momentum_accumulates():
  params = {"w": jnp.array([1.0, 2.0])}
  grads = {"w": jnp.array([1.0, -1.0])}
  opt = optimizers.make_optimizer("sgd", 0.1, "constant", 10, momentum=0.9)
  state = opt.init(params)
  u1, state = opt.update(grads, state, params)
  u2, _ = opt.update(grads, state, params)
  np.testing.assert_allclose(u1["w"], [-0.1, 0.1], rtol=1e-6)
  np.testing.assert_allclose(u2["w"], [-0.19, 0.19], rtol=1e-6)


def test_adam_first_step_is_lr_per_coordinate():
  params, grads = _params(), _grads()
  lr = 1e-2
  new = _first_update("adam", lr, grads, params)
  delta = jax.tree_util.tree_map(lambda n, p: n - p, new, params)
  expected = jax.tree_util.tree_map(lambda g: -lr * jnp.sign(g), grads)
  chex.assert_trees_all_close(delta, expected, rtol=1e-4)


def test_traced_learning_rate_in_vmap_gives_per_member_updates():
  params, grads = _params(), _grads()
  rates = jnp.array([0.1, 0.01, 0.0])

  @jax.jit
  @jax.vmap
  def step(lr):
    opt = optimizers.make_optimizer("sgd", lr, "cosine", total_steps=10, final_fraction=0.1)
    state = opt.init(params)
    updates, _ = opt.update(grads, state, params)
    return updates

  updates = step(rates)
  chex.assert_shape(updates["w"], (3, 2, 2))
  for i, lr in enumerate([0.1, 0.01, 0.0]):
    member = jax.tree_util.tree_map(lambda u, i=i: u[i], updates)
    expected = jax.tree_util.tree_map(lambda g, lr=lr: -lr * g, grads)
    chex.assert_trees_all_close(member, expected, rtol=1e-6, atol=1e-8)


def test_traced_learning_rate_in_vmap_adam():
  params, grads = _params(), _grads()

  @jax.vmap
  def step(lr):
    opt = optimizers.make_optimizer("adam", lr, "constant", total_steps=10)
    updates, _ = opt.update(grads, opt.init(params), params)
    return updates["b"]

  out = step(jnp.array([1e-3, 1e-1]))
  np.testing.assert_allclose(out, [-1e-3 * np.sign([-3, 0.1, 1]), -1e-1 * np.sign([-3, 0.1, 1])],
                             rtol=1e-4)


def test_unknown_optimizer_raises_with_allowed_names():
  with pytest.raises(ValueError, match="rmsprop") as err:
    optimizers.make_optimizer("rmsprop", 0.1, "constant", 10)
  assert "adam" in str(err.value) and "sgd" in str(err.value)


def test_unknown_schedule_raises_with_allowed_names():
  with pytest.raises(ValueError, match="linear") as err:
    optimizers.schedule_factor(0, "linear", 10, 0, 0.0)
  for name in optimizers.SCHEDULES:
    assert name in str(err.value)


def test_unknown_schedule_is_refused_when_the_optimizer_is_built():
  with pytest.raises(ValueError, match="train.schedule='bogus'"):
    optimizers.make_optimizer("sgd", 0.1, "bogus", 10)


def test_warmup_cosine_rises_linearly_then_ends_at_the_final_fraction():
  s = optimizers.warmup_cosine(1e-2, 100, 10, 0.01)
  np.testing.assert_allclose([float(s(c)) for c in (0, 5, 10)], [0.0, 5e-3, 1e-2], rtol=1e-6)
  np.testing.assert_allclose(float(s(100)), 1e-4, rtol=1e-5)
  mid = 10 + 45  # half-way through the decay: the mean of peak and end
  np.testing.assert_allclose(float(s(mid)), (1e-2 + 1e-4) / 2, rtol=1e-4)


def test_clipped_adamw_clips_the_gradient_and_decays_only_where_masked():
  params = {"w": jnp.ones(3), "b": jnp.ones(3)}
  tx = optimizers.clipped_adamw(lambda count: 0.1, 0.9, 0.95, 1e-8, weight_decay=0.5,
                                grad_clip=1.0, decay_mask=lambda p: {"w": True, "b": False})
  zero = {"w": jnp.zeros(3), "b": jnp.zeros(3)}
  updates, _ = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], -0.1 * 0.5 * np.ones(3), rtol=1e-6)  # decay alone
  np.testing.assert_allclose(updates["b"], 0.0)
  big = {"w": jnp.full(3, 100.0), "b": jnp.zeros(3)}
  _, state = tx.update(big, tx.init(params), params)
  mu = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
  mu = next(x for x in mu if isinstance(x, optax.ScaleByAdamState)).mu
  # The first moment saw the gradient clipped to norm 1: (1 - b1) x the clipped gradient.
  np.testing.assert_allclose(float(optax.tree.norm(mu)), 0.1, rtol=1e-5)
