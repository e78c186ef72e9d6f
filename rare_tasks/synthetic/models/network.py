"""The network every synthetic model is: width-N hidden layers, then a linear output layer.

`Network` is the Flax Linen module; `PureNetwork` wraps it behind pure `init`/`apply`; the models
(`encoder_heads`, `mlp`) choose its outputs, biases and what their parameters mean.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "identity": lambda h: h,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
}


class Network(nn.Module):
  """Width-N hidden layers, then a linear output layer named "heads" (zero-initialised).

  Returns the last hidden layer h (B, N) and the outputs (B, num_outputs).
  """

  width: int
  num_hidden_layers: int
  num_outputs: int
  activation: str
  use_bias: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    phi = ACTIVATIONS[self.activation]
    h = phi(nn.Dense(self.width, use_bias=self.use_bias, name="encoder")(x))
    for i in range(self.num_hidden_layers):
      h = phi(nn.Dense(self.width, use_bias=self.use_bias, name=f"hidden_{i}")(h))
    # Zero heads: an untrained task predicts 0 (FVU exactly 1, or chance) instead of
    # random-feature noise.
    heads = nn.Dense(self.num_outputs, use_bias=self.use_bias,
                     kernel_init=nn.initializers.zeros, name="heads")
    return h, heads(h)


class PureNetwork:
  """Pure init/apply around a `Network` module (`module`, given by the subclass); params are a
  plain nested dict, so they vmap, shard and checkpoint directly."""

  @property
  def module(self) -> Network:
    raise NotImplementedError

  def init(self, key: jax.Array, input_dim: int) -> dict:
    """Parameters for inputs of size d."""
    return self.module.init(key, jnp.zeros((1, input_dim)))["params"]

  def apply(self, params: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x (B, d) -> (last hidden layer h (B, N), outputs (B, num_outputs))."""
    return self.module.apply({"params": params}, x)
