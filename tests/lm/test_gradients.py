"""The gradient decomposition: g_t + g_nt = g, the support picks the planted neurons and reads
the right slices, a random null shrinks as 1/sqrt(dimension), and every cosine equals a numpy
computation from explicitly computed gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rare_tasks.lm import gradients, tasks
from rare_tasks.lm.ladder import Shape
from rare_tasks.lm.model import Model, ModelSpec
from rare_tasks.lm.model import loss as model_loss
from rare_tasks.lm.trainer import TrainSpec, optimizer, with_injected

SPEC = ModelSpec(Shape(16, 2, 2, 32), vocab_size=64)
MODEL = Model(SPEC)
# No warmup: the first update is not zero.
TRAIN = TrainSpec(steps=20, learning_rate=3e-3, warmup_steps=0)
EOS = 63


def _params(seed: int = 0):
  return MODEL.init(jax.random.key(seed))


def _batch_and_rows():
  tokens = jax.random.randint(jax.random.key(3), (8, 17), 0, 63)
  task = tasks.make_tasks(("comparison",), 8, 64, 0, EOS, False, "ordered")[0]
  rows = np.full((8, 4), -1, np.int32)
  rows[[1, 4, 6], :3] = task.instances[task.train[:3]]
  rows[[1, 4, 6], 3] = EOS
  return tokens, jnp.asarray(rows), task


def test_the_task_mask_covers_tok2_label_and_eos_of_injected_rows_only():
  rows = np.full((3, 4), -1, np.int32)
  rows[1] = (5, 6, 7, EOS)
  mask = np.asarray(gradients.task_mask(jnp.asarray(rows), 6))
  expected = np.zeros((3, 6), bool)
  expected[1, :3] = True
  np.testing.assert_array_equal(mask, expected)


def test_the_task_and_text_gradients_sum_to_the_batch_gradient():
  params = _params()
  tokens, rows, _ = _batch_and_rows()
  injected = with_injected(tokens, rows)
  mask = gradients.task_mask(rows, 16)
  g_t, g_nt = gradients.masked_gradients(MODEL, params, injected, mask, TRAIN.z_loss)

  def full(p):
    return model_loss(MODEL.apply(p, injected[:, :-1]), injected[:, 1:], TRAIN.z_loss)[0]

  g = jax.grad(full)(params)
  chex.assert_trees_all_close(jax.tree.map(jnp.add, g_t, g_nt), g, rtol=1e-5, atol=1e-8)
  # Both parts are there: neither is zero, and neither alone is the whole.
  assert float(gradients.cosine(gradients.on_support(g_t, jnp.arange(32)),
                                gradients.on_support(g, jnp.arange(32)))) < 0.99
  assert all(float(jnp.abs(a).sum()) > 0 for a in jax.tree.leaves(g_t)[:1])


def test_the_support_picks_the_planted_neurons_and_reads_their_slices():
  rng = np.random.default_rng(0)
  tree = jax.tree.map(lambda a: np.zeros(a.shape, np.float32), _params())
  mlp = tree["layers"]["mlp"]
  planted = {3: 5.0, 17: 4.0, 29: 3.0}
  for i, v in planted.items():
    mlp["gate"]["kernel"][0][:, i] = v * rng.normal(size=16) / 4
    mlp["up"]["kernel"][0][:, i] = v / 4
    mlp["down"]["kernel"][0][i, :] = v / 4
  mlp["gate"]["kernel"][1][:, 0] = 100.0  # the second layer is not the first layer's support
  mags = np.asarray(gradients.neuron_magnitudes(tree))
  expected = np.sqrt((mlp["gate"]["kernel"][0] ** 2).sum(0) + (mlp["up"]["kernel"][0] ** 2).sum(0)
                     + (mlp["down"]["kernel"][0] ** 2).sum(1))
  np.testing.assert_allclose(mags, expected, rtol=1e-6)
  top = np.asarray(jax.lax.top_k(jnp.asarray(mags), 3)[1])
  assert set(top.tolist()) == set(planted)
  flat = np.asarray(gradients.on_support(tree, jnp.asarray([17, 3])))
  np.testing.assert_array_equal(flat, np.concatenate([
      mlp["gate"]["kernel"][0][:, [17, 3]].ravel(), mlp["up"]["kernel"][0][:, [17, 3]].ravel(),
      mlp["down"]["kernel"][0][[17, 3], :].ravel()]))


def test_support_sizes_are_fractions_of_the_width_at_least_one():
  assert gradients.support_sizes((0.001, 0.1, 0.5, 1.0), 64) == (1, 6, 32, 64)


@pytest.mark.parametrize("dim", [100, 1600])
def test_a_random_cosine_has_spread_one_over_sqrt_dimension(dim):
  keys = jax.random.split(jax.random.key(0), 2000)
  pairs = jax.vmap(lambda k: jax.random.normal(k, (2, dim)))(keys)
  cos = np.asarray(jax.vmap(lambda p: gradients.cosine(p[0], p[1]))(pairs))
  assert abs(cos.mean()) < 3 / np.sqrt(dim * 2000)
  assert cos.std() * np.sqrt(dim) == pytest.approx(1.0, rel=0.06)


def test_the_cosine_of_zero_vectors_is_zero():
  assert float(gradients.cosine(jnp.zeros(3), jnp.ones(3))) == 0.0


def test_every_value_equals_numpy_from_explicit_gradients():
  params = _params(1)
  tx = optimizer(TRAIN)
  opt = tx.init(params)
  tokens, rows, task = _batch_and_rows()
  prefixes, labels, weights = gradients.task_instances([task])
  sizes = (3, 32)
  out = jax.jit(lambda p, o: gradients.decompose(
      MODEL, tx, TRAIN.z_loss, sizes, p, o, with_injected(tokens, rows),
      gradients.task_mask(rows, 16), prefixes, labels, weights, jax.random.key(5)))(params, opt)
  assert out["cos_g_gr"].shape == (1, 2)
  np.testing.assert_array_equal(np.asarray(out["support_dim"]), [3 * 16 * 3, 3 * 16 * 32])
  # The reference: every gradient by its own jax.grad, the cosines in numpy.
  x = with_injected(tokens, rows)
  mask = np.asarray(gradients.task_mask(rows, 16), np.float32)

  def part(p, w):
    return model_loss(MODEL.apply(p, x[:, :-1]), x[:, 1:], TRAIN.z_loss, w, 8 * 16)[0]

  g_t = jax.grad(part)(params, jnp.asarray(mask))
  g_nt = jax.grad(part)(params, jnp.asarray(1 - mask))
  g = jax.tree.map(jnp.add, g_t, g_nt)
  update, _ = tx.update(g, opt, params)

  def task_loss(p):
    logits = MODEL.apply(p, jnp.asarray(task.instances[:, :2]))[:, -1]
    return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(
        logits, jnp.asarray(task.instances[:, 2])[:, None], 1)[:, 0])

  g_r = jax.grad(task_loss)(params)
  order = np.argsort(-np.asarray(gradients.neuron_magnitudes(g_r)), kind="stable")

  def cos(a, b):
    return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

  for k, size in enumerate(sizes):
    support = jnp.asarray(order[:size])
    r, a, t, nt, u = (np.asarray(gradients.on_support(tree, support), np.float64)
                      for tree in (g_r, g, g_t, g_nt, update))
    got = {name: float(out[name][0, k]) for name in (*gradients.COSINES, *gradients.NORMS)}
    np.testing.assert_allclose(
        [got["cos_g_gr"], got["cos_gt_gr"], got["cos_gnt_gr"], got["cos_update_gr"]],
        [cos(a, r), cos(t, r), cos(nt, r), cos(u, r)], rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose([got["norm_g"], got["norm_gt"], got["norm_gnt"]],
                               [np.linalg.norm(a), np.linalg.norm(t), np.linalg.norm(nt)],
                               rtol=2e-4)
    assert abs(got["null_cos_gnt_gr"]) < 5 / np.sqrt(3 * 16 * size)
  assert np.isfinite(float(out["null_cos_gnt_gr"][0, 1]))


def test_without_injected_rows_the_task_part_is_zero_and_g_is_the_text_part():
  params = _params(2)
  tx = optimizer(TRAIN)
  tokens, _, task = _batch_and_rows()
  rows = jnp.full((8, 4), -1, jnp.int32)
  out = gradients.decompose(MODEL, tx, TRAIN.z_loss, (4,), params, tx.init(params), tokens,
                            gradients.task_mask(rows, 16), *gradients.task_instances([task]),
                            jax.random.key(0))
  assert float(out["norm_gt"][0, 0]) == 0.0 and float(out["cos_gt_gr"][0, 0]) == 0.0
  np.testing.assert_allclose(out["cos_g_gr"], out["cos_gnt_gr"], rtol=1e-6)


def test_task_instances_pad_with_zero_weight():
  a, b = tasks.make_tasks(("comparison", "addition"), 4, 64, 0, EOS, False, "ordered")
  prefixes, labels, weights = gradients.task_instances([a, b])
  assert prefixes.shape == (2, 16, 2) and labels.shape == weights.shape == (2, 16)
  np.testing.assert_array_equal(prefixes[1], b.instances[:, :2])
  np.testing.assert_array_equal(labels[0], a.instances[:, 2])
  assert weights.min() == 1.0
