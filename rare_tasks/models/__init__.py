"""Models by name."""

from rare_tasks.models.encoder_heads import ACTIVATIONS, EncoderHeads
from rare_tasks.models.mlp import MLP

MODELS = {"encoder_heads": EncoderHeads, "mlp": MLP}

__all__ = ["ACTIVATIONS", "MLP", "MODELS", "EncoderHeads"]
