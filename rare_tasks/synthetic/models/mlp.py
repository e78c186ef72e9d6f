"""MLP classifier: width-N hidden layers with biases and one shared linear output layer.

The model of task families whose inputs say which task an example belongs to (multitask sparse
parity: the task code is part of the input), so every parameter is shared by every task.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from rare_tasks.synthetic.models.network import Network, PureNetwork


@dataclasses.dataclass(frozen=True)
class MLP(PureNetwork):
  """The MLP; params are a plain nested dict: encoder (d, N) and bias, hidden_i (N, N) and bias,
  heads (N, num_outputs) and bias.

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
