"""Tests of rare_tasks/synthetic/models/network.py and the registry: the Linen network behind pure
init/apply, with and without biases, and a group's model built by name."""

import jax
import numpy as np
import pytest

from rare_tasks.synthetic.models import MLP, EncoderHeads, model_of
from rare_tasks.synthetic.models.network import ACTIVATIONS, Network
from rare_tasks.synthetic.tasks import LinearMixture, SparseParity


@pytest.mark.parametrize("use_bias", [False, True])
def test_network_is_hidden_layers_then_zero_heads(use_bias):
  net = Network(width=3, num_hidden_layers=1, num_outputs=2, activation="relu",
                use_bias=use_bias)
  params = net.init(jax.random.key(0), np.zeros((1, 4)))["params"]
  assert sorted(params) == ["encoder", "heads", "hidden_0"]
  assert ("bias" in params["encoder"]) == use_bias
  np.testing.assert_array_equal(params["heads"]["kernel"], 0.0)
  x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
  h, y = net.apply({"params": params}, x)
  first = x @ np.asarray(params["encoder"]["kernel"])
  if use_bias:
    first = first + np.asarray(params["encoder"]["bias"])
  second = np.maximum(first, 0) @ np.asarray(params["hidden_0"]["kernel"])
  if use_bias:
    second = second + np.asarray(params["hidden_0"]["bias"])
  np.testing.assert_allclose(h, np.maximum(second, 0), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(y, 0.0)


def test_pure_init_apply_are_the_modules():
  model = EncoderHeads(width=4, num_tasks=2, block_size=3, activation="gelu")
  params = model.init(jax.random.key(1), 6)
  x = np.ones((2, 6), np.float32)
  h, y = model.apply(params, x)
  h2, y2 = model.module.apply({"params": params}, x)
  np.testing.assert_array_equal(h, h2)
  np.testing.assert_array_equal(y, y2)
  np.testing.assert_allclose(h, ACTIVATIONS["gelu"](x @ np.asarray(params["encoder"]["kernel"])),
                             rtol=1e-6)


def test_model_of_builds_the_groups_model_for_its_family():
  static = {"width": 5, "activation": "identity", "num_hidden_layers": 2}
  assert model_of("encoder_heads", static, LinearMixture(3, 4)) == EncoderHeads(
      5, 3, 4, "identity", 2)
  assert model_of("mlp", {**static, "activation": "relu"}, SparseParity(3, 6)) == MLP(
      5, 1, "relu", 2)
