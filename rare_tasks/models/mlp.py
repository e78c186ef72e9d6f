"""MLP classifier: width-N hidden layers with biases and one shared linear output layer.

The model of task families whose inputs say which task an example belongs to (multitask sparse
parity: the task code is part of the input), so every parameter is shared by every task.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from rare_tasks.models.encoder_heads import Network


@dataclasses.dataclass(frozen=True)
class MLP:
  """Pure init/apply wrapper; params are a plain nested dict.

  Attributes:
    width: N, the width of every hidden layer.
    num_outputs: the size of the output layer.
    activation: "relu", "gelu" or "identity".
    num_hidden_layers: hidden layers after the first.
  """

  width: int
  num_outputs: int
  activation: str = "relu"
  num_hidden_layers: int = 0

  task_specific: ClassVar[tuple[str, ...]] = ()

  @classmethod
  def for_task(cls, task, width: int, activation: str, num_hidden_layers: int) -> MLP:
    return cls(width=width, num_outputs=task.output_dim, activation=activation,
               num_hidden_layers=num_hidden_layers)

  @property
  def module(self) -> Network:
    return Network(self.width, self.num_hidden_layers, self.num_outputs, self.activation,
                   use_bias=True)

  @property
  def is_linear(self) -> bool:
    # Biases make even an identity network affine, not the linear map the theory assumes.
    return False

  def init(self, key: jax.Array, input_dim: int) -> dict:
    """Parameters for inputs of size d: encoder (d, N) and bias, heads (N, num_outputs) and bias."""
    return self.module.init(key, jnp.zeros((1, input_dim)))["params"]

  def apply(self, params: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x (B, d) -> (last hidden layer h (B, N), outputs (B, num_outputs))."""
    return self.module.apply({"params": params}, x)
