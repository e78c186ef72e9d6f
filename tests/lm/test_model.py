"""The decoder against a plain numpy implementation of the same equations, its init statistics
and its loss; its written-out backward passes (attention on a CPU, dense layers, loss) against
autodiff of the plain computations."""

import dataclasses

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rare_tasks.lm import model
from rare_tasks.lm.ladder import Shape

SHAPE = Shape(d_model=16, num_layers=2, num_heads=2, mlp_hidden=24)


def _rms(x, w):
  return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + 1e-6) * w


def _rope(x):  # (T, H, D)
  t, _, d = x.shape
  inv = 500_000.0 ** (-np.arange(0, d, 2) / d)
  ang = np.arange(t)[:, None] * inv[None]
  cos, sin = np.cos(ang)[:, None], np.sin(ang)[:, None]
  x1, x2 = x[..., : d // 2], x[..., d // 2:]
  return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def _attention(x, p, block, heads):
  t, d = x.shape
  q, k, v = (x @ p[n]["kernel"] for n in ("q", "k", "v"))
  if block == "olmo2":
    q, k = _rms(q, p["q_norm"]["weight"]), _rms(k, p["k_norm"]["weight"])
  split = lambda a: a.reshape(t, heads, d // heads)  # noqa: E731
  q, k, v = _rope(split(q)), _rope(split(k)), split(v)
  scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(d // heads)
  scores = np.where(np.tril(np.ones((t, t), bool))[None], scores, -np.inf)
  w = np.exp(scores - scores.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  return np.einsum("hts,shd->thd", w, v).reshape(t, d) @ p["o"]["kernel"]


def _mlp(x, p):
  gate, up = x @ p["gate"]["kernel"], x @ p["up"]["kernel"]
  return (gate / (1 + np.exp(-gate)) * up) @ p["down"]["kernel"]


def _numpy_decoder(params, tokens, block, heads):
  """logits (T, V) of one row, float64, layer by layer."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  x = p["embedding"][tokens]
  for i in range(p["layers"]["attention"]["q"]["kernel"].shape[0]):
    layer = jax.tree.map(lambda a, i=i: a[i], p["layers"])
    an, mn = layer["attention_norm"]["weight"], layer["mlp_norm"]["weight"]
    if block == "olmo2":
      h = x + _rms(_attention(x, layer["attention"], block, heads), an)
      x = h + _rms(_mlp(h, layer["mlp"]), mn)
    else:
      h = x + _attention(_rms(x, an), layer["attention"], block, heads)
      x = h + _mlp(_rms(h, mn), layer["mlp"])
  x = _rms(x, p["final_norm"]["weight"])
  return x @ (p["embedding"].T if "lm_head" not in p else p["lm_head"]["kernel"])


def _perturbed(params, key):
  """Params with norm weights away from 1, so that a misplaced norm shows."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(tree, [a + 0.3 * jax.random.normal(k, a.shape)
                                   if a.ndim <= 2 and a.shape[-1] == SHAPE.d_model
                                   and a.size < 100 else a for a, k in zip(leaves, keys)])


@pytest.mark.parametrize("block,tie", [("olmo2", False), ("olmo1", False), ("olmo2", True)])
def test_decoder_matches_a_numpy_implementation_of_its_equations(block, tie):
  m = model.Model(model.ModelSpec(SHAPE, vocab_size=40, block=block, tie_embeddings=tie))
  params = _perturbed(jax.jit(m.init)(jax.random.key(1)), jax.random.key(2))
  tokens = jax.random.randint(jax.random.key(3), (2, 11), 0, 40)
  logits = jax.jit(m.apply)(params, tokens)
  chex.assert_shape(logits, (2, 11, 40))
  assert logits.dtype == jnp.float32
  for row in range(2):
    want = _numpy_decoder(params, np.asarray(tokens[row]), block, SHAPE.num_heads)
    np.testing.assert_allclose(logits[row], want, rtol=2e-4, atol=2e-5)


def test_the_blocks_differ_and_olmo1_has_no_qk_norm():
  p2 = jax.eval_shape(model.Model(model.ModelSpec(SHAPE, 40, block="olmo2")).init,
                      jax.random.key(0))
  p1 = jax.eval_shape(model.Model(model.ModelSpec(SHAPE, 40, block="olmo1")).init,
                      jax.random.key(0))
  assert "q_norm" in p2["layers"]["attention"] and "q_norm" not in p1["layers"]["attention"]
  # QK-norm is over the whole projection (heads x head_dim), not per head.
  assert p2["layers"]["attention"]["q_norm"]["weight"].shape == (2, SHAPE.d_model)


def test_causal_a_later_token_never_changes_an_earlier_logit():
  m = model.Model(model.ModelSpec(SHAPE, 40))
  params = jax.jit(m.init)(jax.random.key(0))
  a = jnp.array([[1, 2, 3, 4, 5, 6]])
  b = a.at[0, 4].set(9)
  apply = jax.jit(m.apply)
  la, lb = apply(params, a), apply(params, b)
  np.testing.assert_array_equal(la[0, :4], lb[0, :4])
  assert not np.allclose(la[0, 4:], lb[0, 4:])


def test_init_is_a_truncated_normal_of_std_002_on_every_weight():
  shape = Shape(128, 2, 4, 512)
  params = jax.jit(model.Model(model.ModelSpec(shape, 512)).init)(jax.random.key(0))
  # A N(0, 0.02) truncated at +-3 std has std 0.02 * 0.98658.
  std = 0.02 * np.sqrt(1 - 6 * np.exp(-4.5) / np.sqrt(2 * np.pi) / 0.9973002)
  kernels = {"embedding": params["embedding"], "lm_head": params["lm_head"]["kernel"],
             **{n: params["layers"]["attention"][n]["kernel"] for n in "qkvo"},
             **{n: params["layers"]["mlp"][n]["kernel"] for n in ("gate", "up", "down")}}
  for name, w in kernels.items():
    w = np.asarray(w)
    assert abs(w.std() / std - 1) < 0.03, name
    assert abs(w.mean()) < 3e-4, name
    assert np.abs(w).max() <= 3 * 0.02 + 1e-7, name
    assert np.abs(w).max() > 2.5 * 0.02, name  # truncated at 3 std, not at 2
  layers = np.asarray(params["layers"]["attention"]["q"]["kernel"])
  assert not np.allclose(layers[0], layers[1])  # each scanned layer drawn on its own
  for norm in jax.tree.leaves(params["layers"]["attention_norm"]) + [params["final_norm"]]:
    np.testing.assert_array_equal(jax.tree.leaves(norm)[0], 1.0)
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(params))


def test_bfloat16_compute_keeps_float32_params_and_logits_and_is_close():
  spec = model.ModelSpec(SHAPE, 40)
  params = jax.jit(model.Model(spec).init)(jax.random.key(0))
  tokens = jnp.arange(12).reshape(2, 6)
  f32 = jax.jit(model.Model(spec).apply)(params, tokens)
  bf16 = jax.jit(model.Model(dataclasses.replace(spec, dtype="bfloat16")).apply)(params, tokens)
  assert bf16.dtype == jnp.float32
  assert 0 < float(jnp.max(jnp.abs(bf16 - f32))) < 0.05


def test_remat_gives_the_same_gradients():
  spec = model.ModelSpec(SHAPE, 40)
  tokens = jnp.arange(14).reshape(2, 7) % 40
  params = jax.jit(model.Model(spec).init)(jax.random.key(0))

  def grads(s):
    m = model.Model(s)
    def total(p):
      return model.loss(m.apply(p, tokens[:, :-1]), tokens[:, 1:], 1e-5)[0]
    return jax.jit(jax.grad(total))(params)

  chex.assert_trees_all_close(grads(spec), grads(dataclasses.replace(spec, remat=True)),
                              rtol=1e-5, atol=1e-7)


def test_loss_is_cross_entropy_plus_z_loss():
  logits = jax.random.normal(jax.random.key(0), (2, 3, 7)) * 3
  targets = jnp.array([[0, 6, 3], [2, 2, 5]])
  total, parts = jax.jit(model.loss, static_argnums=2)(logits, targets, 1e-5)
  x = np.asarray(logits, np.float64)
  lse = np.log(np.exp(x).sum(-1))
  ce = lse - np.take_along_axis(x, np.asarray(targets)[..., None], -1)[..., 0]
  np.testing.assert_allclose(parts["ce"], ce.mean(), rtol=1e-6)
  np.testing.assert_allclose(parts["z_loss"], 1e-5 * (lse ** 2).mean(), rtol=1e-5)
  np.testing.assert_allclose(total, ce.mean() + 1e-5 * (lse ** 2).mean(), rtol=1e-6)
  # weights: one normaliser over the weighted tokens
  w = jnp.array([[1, 0, 1], [0, 0, 1]])
  _, wparts = model.loss(logits, targets, 0.0, weights=w)
  np.testing.assert_allclose(wparts["ce"], (ce * np.asarray(w)).sum() / 3, rtol=1e-6)


def test_the_residual_stream_is_the_embedding_then_every_blocks_output():
  m = model.Model(model.ModelSpec(SHAPE, 32))
  params = m.init(jax.random.key(0))
  tokens = jnp.array([[3, 5, 7, 1], [2, 2, 9, 30]])
  logits, stream = m.residuals(params, tokens)
  assert stream.shape == (3, 2, 4, 16)
  np.testing.assert_array_equal(logits, m.apply(params, tokens))
  np.testing.assert_allclose(stream[0], np.asarray(params["embedding"])[np.asarray(tokens)])
  # The logits are the LM head of the final norm of the last block's output.
  final = _rms(np.asarray(stream[-1], np.float64), np.asarray(params["final_norm"]["weight"]))
  np.testing.assert_allclose(final @ np.asarray(params["lm_head"]["kernel"]), logits, rtol=1e-4,
                             atol=1e-5)
  # The first block alone, as its own model, gives layer 1.
  one = model.Model(model.ModelSpec(dataclasses.replace(SHAPE, num_layers=1), 32))
  first = dict(params, layers=jax.tree.map(lambda a: a[:1], params["layers"]))
  np.testing.assert_allclose(one.residuals(first, tokens)[1][1], stream[1], rtol=1e-5,
                             atol=1e-6)


def _plain_attention(q, k, v):
  """Causal softmax attention as the einsums of its definition (autodiff for its gradient)."""
  t, d = q.shape[1], q.shape[-1]
  scores = jnp.einsum("bthd,bshd->bhts", q, k) / np.sqrt(d)
  scores = jnp.where(jnp.tril(jnp.ones((t, t), bool)), scores, -jnp.inf)
  return jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(scores, axis=-1), v)


@pytest.mark.parametrize("head_dim,length", [(8, 64), (32, 11)])
def test_cpu_attention_and_its_gradient_equal_the_plain_computation(head_dim, length):
  q, k, v = (jax.random.normal(key, (3, length, 4, head_dim))
             for key in jax.random.split(jax.random.key(0), 3))
  w = jax.random.normal(jax.random.key(1), q.shape)

  def value_and_grads(attention):
    f = lambda q, k, v: jnp.sum(attention(q, k, v) * w)  # noqa: E731
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))(q, k, v)

  fast = value_and_grads(lambda q, k, v: model.attention(q, k, v, "auto"))
  for reference in (_plain_attention, model.library_attention):
    want = value_and_grads(reference)
    chex.assert_trees_all_close(fast, want, rtol=2e-5, atol=2e-6)
  # What "auto" compiles to on a CPU: the written-out attention, not jax.nn's.
  chex.assert_trees_all_close(value_and_grads(model.causal_attention), fast, rtol=0, atol=0)


def test_cpu_attention_in_bfloat16_is_close_to_the_library_one():
  q, k, v = (jax.random.normal(key, (2, 16, 2, 8), jnp.bfloat16)
             for key in jax.random.split(jax.random.key(2), 3))
  grads = [jax.jit(jax.grad(lambda q, k, v, f=f: jnp.sum(f(q, k, v).astype(jnp.float32)),
                            argnums=(0, 1, 2)))(q, k, v)
           for f in (model.causal_attention, model.library_attention)]
  assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(grads[0]))
  chex.assert_trees_all_close(*[jax.tree.map(lambda a: a.astype(jnp.float32), g) for g in grads],
                              atol=0.05)


def test_the_loss_gradient_equals_autodiff_of_its_definition():
  logits = jax.random.normal(jax.random.key(0), (2, 5, 9)) * 4
  targets = jax.random.randint(jax.random.key(1), (2, 5), 0, 9)
  weights = jnp.array([[1, 0, 1, 1, 0], [0, 2, 1, 1, 1]])

  def plain(logits):  # the loss with autodiff through logsumexp and take_along_axis
    lse = jax.nn.logsumexp(logits, axis=-1)
    ce = lse - jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return (jnp.sum(ce * weights) + 0.1 * jnp.sum(lse ** 2 * weights)) / jnp.sum(weights)

  fast = lambda logits: model.loss(logits, targets, 0.1, weights)[0]  # noqa: E731
  want, got = (jax.jit(jax.value_and_grad(f))(logits) for f in (plain, fast))
  chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("tie", [False, True])
def test_the_decoders_gradients_equal_those_through_the_library_attention(tie):
  spec = model.ModelSpec(SHAPE, 40, tie_embeddings=tie)
  params = _perturbed(jax.jit(model.Model(spec).init)(jax.random.key(0)), jax.random.key(1))
  tokens = jax.random.randint(jax.random.key(2), (3, 13), 0, 40)

  def grads(attention):
    m = model.Model(dataclasses.replace(spec, attention=attention))
    total = lambda p: model.loss(m.apply(p, tokens[:, :-1]), tokens[:, 1:], 1e-4)[0]  # noqa: E731
    return jax.jit(jax.value_and_grad(total))(params)

  chex.assert_trees_all_close(grads("auto"), grads("xla"), rtol=2e-5, atol=1e-7)


def test_dense_is_flax_dense_without_bias_and_its_gradient_autodiffs():
  x = jax.random.normal(jax.random.key(0), (12, 16))
  ours, flax_dense = model.Dense(24), nn.Dense(24, use_bias=False, kernel_init=model.weight_init())
  params = ours.init(jax.random.key(1), x)
  chex.assert_trees_all_equal(params, flax_dense.init(jax.random.key(1), x))  # the same tree
  g = jax.random.normal(jax.random.key(2), (12, 24))
  grads = [jax.jit(jax.grad(lambda p, x, f=f: jnp.sum(f.apply(p, x) * g), argnums=(0, 1)))(
      params, x) for f in (ours, flax_dense)]
  chex.assert_trees_all_close(*grads, rtol=1e-6, atol=1e-6)
