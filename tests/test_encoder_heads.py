"""Tests of rare_tasks/models/encoder_heads.py: shapes, zero heads, the effective linear map."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rare_tasks.models import ACTIVATIONS, MODELS, EncoderHeads


def _shapes(params):
  return jax.tree_util.tree_map(lambda a: a.shape, params)


def test_param_shapes_without_hidden_layers():
  model = EncoderHeads(width=5, num_tasks=3, block_size=2)
  params = model.init(jax.random.key(0), input_dim=6)
  assert _shapes(params) == {"encoder": {"kernel": (6, 5)}, "heads": {"kernel": (5, 6)}}


def test_param_shapes_with_hidden_layers():
  model = EncoderHeads(width=4, num_tasks=2, block_size=3, num_hidden_layers=2)
  params = model.init(jax.random.key(0), input_dim=6)
  assert _shapes(params) == {
      "encoder": {"kernel": (6, 4)},
      "hidden_0": {"kernel": (4, 4)},
      "hidden_1": {"kernel": (4, 4)},
      "heads": {"kernel": (4, 6)},
  }


@pytest.mark.parametrize("activation", ["identity", "relu", "gelu"])
def test_heads_start_at_zero(activation):
  model = EncoderHeads(width=4, num_tasks=3, block_size=2, activation=activation,
                       num_hidden_layers=1)
  params = model.init(jax.random.key(1), input_dim=6)
  np.testing.assert_array_equal(params["heads"]["kernel"], 0.0)
  x = jax.random.normal(jax.random.key(2), (7, 6))
  h, y = model.apply(params, x)
  chex.assert_shape(h, (7, 4))
  chex.assert_shape(y, (7, 6))
  np.testing.assert_array_equal(y, 0.0)
  assert np.abs(h).max() > 0  # the encoder is not zero-initialised


def test_encoder_is_random_and_seeded():
  model = EncoderHeads(width=4, num_tasks=2, block_size=2)
  a = model.init(jax.random.key(0), 4)
  b = model.init(jax.random.key(0), 4)
  c = model.init(jax.random.key(1), 4)
  chex.assert_trees_all_close(a, b)
  assert not np.allclose(a["encoder"]["kernel"], c["encoder"]["kernel"])


@pytest.mark.parametrize("num_hidden_layers", [0, 1, 3])
def test_encoder_map_is_effective_linear_map(num_hidden_layers):
  model = EncoderHeads(width=5, num_tasks=2, block_size=3, num_hidden_layers=num_hidden_layers)
  params = model.init(jax.random.key(3), input_dim=6)
  x = jax.random.normal(jax.random.key(4), (9, 6))
  h, _ = model.apply(params, x)
  w = model.encoder_map(params)
  chex.assert_shape(w, (5, 6))
  np.testing.assert_allclose(h, x @ w.T, rtol=1e-5, atol=1e-5)


def test_outputs_are_heads_of_h():
  model = EncoderHeads(width=3, num_tasks=2, block_size=2, num_hidden_layers=1)
  params = model.init(jax.random.key(5), input_dim=4)
  params = jax.tree_util.tree_map(lambda a: a, params)
  params["heads"]["kernel"] = jax.random.normal(jax.random.key(6), (3, 4))
  x = jax.random.normal(jax.random.key(7), (5, 4))
  h, y = model.apply(params, x)
  np.testing.assert_allclose(y, h @ params["heads"]["kernel"], rtol=1e-5, atol=1e-5)
  # The whole linear model is x -> x W^T H.
  np.testing.assert_allclose(y, x @ model.encoder_map(params).T @ params["heads"]["kernel"],
                             rtol=1e-4, atol=1e-5)


def test_relu_and_gelu_change_h():
  x = jax.random.normal(jax.random.key(8), (16, 6))
  lin = EncoderHeads(width=8, num_tasks=2, block_size=3)
  params = lin.init(jax.random.key(9), input_dim=6)
  h_lin, _ = lin.apply(params, x)
  h_relu, _ = EncoderHeads(8, 2, 3, activation="relu").apply(params, x)
  h_gelu, _ = EncoderHeads(8, 2, 3, activation="gelu").apply(params, x)
  np.testing.assert_allclose(h_relu, jnp.maximum(h_lin, 0.0), rtol=1e-6)
  np.testing.assert_allclose(h_gelu, jax.nn.gelu(h_lin), rtol=1e-5, atol=1e-6)
  assert not np.allclose(h_relu, h_lin)
  assert not np.allclose(h_gelu, h_lin)
  assert not np.allclose(h_gelu, h_relu)


def test_activation_applies_after_each_hidden_layer():
  model = EncoderHeads(width=4, num_tasks=1, block_size=2, activation="relu", num_hidden_layers=1)
  params = model.init(jax.random.key(10), input_dim=2)
  x = jax.random.normal(jax.random.key(11), (6, 2))
  h, _ = model.apply(params, x)
  h1 = jnp.maximum(x @ params["encoder"]["kernel"], 0)
  np.testing.assert_allclose(h, jnp.maximum(h1 @ params["hidden_0"]["kernel"], 0), rtol=1e-5,
                             atol=1e-6)


def test_is_linear_and_registry():
  assert EncoderHeads(4, 2, 2).is_linear
  assert not EncoderHeads(4, 2, 2, activation="relu").is_linear
  assert not EncoderHeads(4, 2, 2, activation="gelu").is_linear
  assert set(ACTIVATIONS) == {"identity", "relu", "gelu"}
  assert MODELS["encoder_heads"] is EncoderHeads
