"""Shared width-N encoder with one linear head per task (docs/science.md, "The model").

h = phi(E x) (optionally followed by further hidden layers of width N), yhat_k = D_k h. The K heads
are stored as one kernel of shape (N, K * m): column block k is D_k^T. Evaluation computes every
head on every example (one dense matmul); training needs only each example's own head
(`own_outputs`), K times fewer multiply-adds.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from rare_tasks.synthetic.models import own_heads
from rare_tasks.synthetic.models.network import Network, PureNetwork


@dataclasses.dataclass(frozen=True)
class EncoderHeads(PureNetwork):
  """The encoder and its per-task heads; params are a plain nested dict: encoder kernel (d, N),
  hidden_i kernels (N, N), heads kernel (N, K*m); no biases.

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

  # Parameters that belong to one task each; the rest are shared by all tasks.
  task_specific: ClassVar[tuple[str, ...]] = ("heads",)

  @classmethod
  def for_task(cls, task, width: int, activation: str, num_hidden_layers: int) -> EncoderHeads:
    """The model of a grid cell: one head of block_size outputs per task of a linear mixture."""
    return cls(width=width, num_tasks=task.num_tasks, block_size=task.block_size,
               activation=activation, num_hidden_layers=num_hidden_layers)

  @property
  def module(self) -> Network:
    return Network(self.width, self.num_hidden_layers, self.num_tasks * self.block_size,
                   self.activation)

  @property
  def is_linear(self) -> bool:
    return self.activation == "identity"

  def own_outputs(self, params: dict, x: jax.Array, tasks: jax.Array) -> jax.Array:
    """Each example's own head only: x (B, d), tasks (B,) -> D_{t_i} h_i, shape (B, m).

    Every head's outputs are left to the compiler to drop: only h is used
    (rare_tasks.synthetic.models.own_heads)."""
    h, _ = self.apply(params, x)
    heads = params["heads"]["kernel"].reshape(self.width, self.num_tasks, self.block_size)
    return own_heads.own_outputs(h, jnp.swapaxes(heads, 0, 1), tasks)

  def encoder_map(self, params: dict) -> jax.Array:
    """The linear map x -> h as an (N, d) matrix; only meaningful when `is_linear`."""
    w = params["encoder"]["kernel"]
    for i in range(self.num_hidden_layers):
      w = w @ params[f"hidden_{i}"]["kernel"]
    return w.T
