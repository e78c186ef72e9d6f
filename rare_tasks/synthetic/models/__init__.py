"""Models by name."""

from __future__ import annotations

from typing import Any

from rare_tasks.synthetic.models.encoder_heads import EncoderHeads
from rare_tasks.synthetic.models.mlp import MLP
from rare_tasks.synthetic.models.network import ACTIVATIONS

# config.model.name -> model class; a model has for_task, init, apply, is_linear, task_specific.
MODELS = {"encoder_heads": EncoderHeads, "mlp": MLP}


def model_of(name: str, static: dict[str, Any], task: Any) -> EncoderHeads | MLP:
  """The model `name` of a group's shape (`static`: width, activation, num_hidden_layers)."""
  return MODELS[name].for_task(task, width=static["width"], activation=static["activation"],
                               num_hidden_layers=static["num_hidden_layers"])


__all__ = ["ACTIVATIONS", "MLP", "MODELS", "EncoderHeads", "model_of"]
