"""Tests of rare_tasks/synthetic/models/encoder_heads.py: shapes, zero heads, the effective linear
map."""

import dataclasses
import functools

import chex
import jax
import numpy as np
import pytest

from rare_tasks.synthetic.models import ACTIVATIONS, MODELS, EncoderHeads


def _x(seed, shape):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _shapes(params):
  return jax.tree_util.tree_map(lambda a: a.shape, params)


# Two models whose init is exercised (jitted: one compile each); other tests build params directly.
MODEL_A = EncoderHeads(width=5, num_tasks=3, block_size=2)
MODEL_B = EncoderHeads(width=4, num_tasks=2, block_size=3, num_hidden_layers=2)
D = 6


@functools.cache
def _init_fn(model):
  return jax.jit(model.init, static_argnums=1)


def _init(model, seed):
  return _init_fn(model)(jax.random.key(seed), D)


def _random_params(width, num_tasks, block_size, num_hidden_layers, seed):
  rng = np.random.default_rng(seed)
  params = {"encoder": {"kernel": rng.standard_normal((D, width)).astype(np.float32)}}
  for i in range(num_hidden_layers):
    params[f"hidden_{i}"] = {
        "kernel": rng.standard_normal((width, width)).astype(np.float32) / np.sqrt(width)}
  params["heads"] = {
      "kernel": rng.standard_normal((width, num_tasks * block_size)).astype(np.float32)}
  return params


def test_param_shapes_without_hidden_layers():
  params = _init(MODEL_A, 0)
  assert _shapes(params) == {"encoder": {"kernel": (6, 5)}, "heads": {"kernel": (5, 6)}}


def test_param_shapes_with_hidden_layers():
  params = _init(MODEL_B, 0)
  assert _shapes(params) == {
      "encoder": {"kernel": (6, 4)},
      "hidden_0": {"kernel": (4, 4)},
      "hidden_1": {"kernel": (4, 4)},
      "heads": {"kernel": (4, 6)},
  }


@pytest.mark.parametrize("activation", ["identity", "relu", "gelu"])
def test_heads_start_at_zero(activation):
  params = _init(MODEL_B, 1)
  np.testing.assert_array_equal(params["heads"]["kernel"], 0.0)
  model = dataclasses.replace(MODEL_B, activation=activation)
  x = _x(2, (7, 6))
  h, y = model.apply(params, x)
  chex.assert_shape(h, (7, 4))
  chex.assert_shape(y, (7, 6))
  np.testing.assert_array_equal(y, 0.0)
  assert np.abs(h).max() > 0  # the encoder is not zero-initialised


def test_encoder_is_random_and_seeded():
  a, b, c = _init(MODEL_A, 0), _init(MODEL_A, 0), _init(MODEL_A, 1)
  chex.assert_trees_all_close(a, b)
  assert not np.allclose(a["encoder"]["kernel"], c["encoder"]["kernel"])
  # Lecun-normal scale: kernel entries have variance about 1 / d.
  assert 0.05 < float(np.var(a["encoder"]["kernel"])) < 0.6


@pytest.mark.parametrize("num_hidden_layers", [0, 1, 3])
def test_encoder_map_is_effective_linear_map(num_hidden_layers):
  model = EncoderHeads(width=5, num_tasks=2, block_size=3, num_hidden_layers=num_hidden_layers)
  params = _random_params(5, 2, 3, num_hidden_layers, seed=3)
  x = _x(4, (9, 6))
  h, _ = model.apply(params, x)
  w = model.encoder_map(params)
  chex.assert_shape(w, (5, 6))
  np.testing.assert_allclose(h, x @ np.asarray(w).T, rtol=1e-4, atol=1e-5)
  if num_hidden_layers:
    assert not np.allclose(w, params["encoder"]["kernel"].T)


def test_outputs_are_heads_of_h():
  model = EncoderHeads(width=5, num_tasks=2, block_size=3, num_hidden_layers=1)
  params = _random_params(5, 2, 3, 1, seed=5)
  heads = params["heads"]["kernel"]
  x = _x(7, (5, 6))
  h, y = model.apply(params, x)
  np.testing.assert_allclose(y, np.asarray(h) @ heads, rtol=1e-5, atol=1e-5)
  # The whole linear model is x -> x W^T H.
  np.testing.assert_allclose(y, x @ np.asarray(model.encoder_map(params)).T @ heads,
                             rtol=1e-4, atol=1e-4)


def test_relu_and_gelu_change_h():
  x = _x(8, (16, 6))
  params = _random_params(5, 2, 3, 0, seed=9)
  h_lin, _ = EncoderHeads(5, 2, 3).apply(params, x)
  h_relu, _ = EncoderHeads(5, 2, 3, activation="relu").apply(params, x)
  h_gelu, _ = EncoderHeads(5, 2, 3, activation="gelu").apply(params, x)
  h_lin = np.asarray(h_lin, np.float64)
  gelu = 0.5 * h_lin * (1 + np.tanh(np.sqrt(2 / np.pi) * (h_lin + 0.044715 * h_lin ** 3)))
  np.testing.assert_allclose(h_relu, np.maximum(h_lin, 0.0), rtol=1e-6)
  np.testing.assert_allclose(h_gelu, gelu, rtol=1e-4, atol=1e-6)
  assert not np.allclose(h_relu, h_lin)
  assert not np.allclose(h_gelu, h_lin)
  assert not np.allclose(h_gelu, h_relu)


def test_activation_applies_after_each_hidden_layer():
  model = EncoderHeads(width=5, num_tasks=2, block_size=3, activation="relu", num_hidden_layers=1)
  params = _random_params(5, 2, 3, 1, seed=10)
  x = _x(11, (6, 6))
  h, y = model.apply(params, x)
  h1 = np.maximum(x @ params["encoder"]["kernel"], 0)
  h2 = np.maximum(h1 @ params["hidden_0"]["kernel"], 0)
  np.testing.assert_allclose(h, h2, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y, h2 @ params["heads"]["kernel"], rtol=1e-4, atol=1e-5)


def test_is_linear_and_registry():
  assert EncoderHeads(4, 2, 2).is_linear
  assert not EncoderHeads(4, 2, 2, activation="relu").is_linear
  assert not EncoderHeads(4, 2, 2, activation="gelu").is_linear
  assert set(ACTIVATIONS) == {"identity", "relu", "gelu"}
  assert MODELS["encoder_heads"] is EncoderHeads
