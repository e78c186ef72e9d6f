"""Models by name."""

from rare_tasks.models.encoder_heads import ACTIVATIONS, EncoderHeads

MODELS = {"encoder_heads": EncoderHeads}

__all__ = ["ACTIVATIONS", "MODELS", "EncoderHeads"]
