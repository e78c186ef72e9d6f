"""Shared width-N encoder with one linear head per task (PAPER.md section 2).

h = phi(E x) (optionally followed by further hidden layers of width N), yhat_k = D_k h. The K heads
are stored as one kernel of shape (N, K * m): column block k is D_k^T. Computing every head at
once and masking the loss by each example's task is one dense matmul, faster than gathering each
example's head.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

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


@dataclasses.dataclass(frozen=True)
class EncoderHeads:
  """Pure init/apply wrapper around the Linen module; params are a plain nested dict.

  Attributes:
    width: N, the encoder width.
    num_tasks: K.
    block_size: m, the output size of each head.
    activation: "identity" (the theory's setting), "relu" or "gelu".
    num_hidden_layers: extra N x N layers after the encoder.
  """

  width: int
  num_tasks: int
  block_size: int
  activation: str = "identity"
  num_hidden_layers: int = 0

  @classmethod
  def for_task(cls, task, width: int, activation: str, num_hidden_layers: int) -> EncoderHeads:
    """The model of a grid cell: one head of block_size outputs per task of a linear mixture."""
    return cls(width=width, num_tasks=task.num_tasks, block_size=task.block_size,
               activation=activation, num_hidden_layers=num_hidden_layers)

  @property
  def module(self) -> Network:
    return Network(self.width, self.num_hidden_layers, self.num_tasks * self.block_size,
                   self.activation)

  # Parameters that belong to one task each; the rest are shared by all tasks.
  task_specific: ClassVar[tuple[str, ...]] = ("heads",)

  @property
  def is_linear(self) -> bool:
    return self.activation == "identity"

  def init(self, key: jax.Array, input_dim: int) -> dict:
    """Parameters for inputs of size d: encoder kernel (d, N), heads kernel (N, K*m)."""
    return self.module.init(key, jnp.zeros((1, input_dim)))["params"]

  def apply(self, params: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x (B, d) -> (h (B, N), all heads' outputs (B, K*m))."""
    return self.module.apply({"params": params}, x)

  def encoder_map(self, params: dict) -> jax.Array:
    """The linear map x -> h as an (N, d) matrix; only meaningful when `is_linear`."""
    w = params["encoder"]["kernel"]
    for i in range(self.num_hidden_layers):
      w = w @ params[f"hidden_{i}"]["kernel"]
    return w.T
