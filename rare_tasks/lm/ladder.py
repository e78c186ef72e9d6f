"""The size ladder by name: each preset's shape, its nominal size, the ladder's default learning
rate and batch, and the parameter and FLOP counts of a decoder shape.

The paper's sizes (4M .. 4B) and the DataDecide sizes between them (docs/science.md, "The
decoders") keep their names; a name counts the non-embedding parameters plus one embedding
matrix at the 50,304 rows of a 50K vocabulary (so at 4M, 86% of the count is that embedding).
The CPU presets are named by width. Head counts follow the OLMo model ladder (d_model / heads
even, for RoPE).
"""

from __future__ import annotations

import dataclasses

# The vocabulary the paper's size names are counted at (GPT-NeoX 50,280 padded to 50,304).
NAMING_VOCAB = 50_304
# The ladder's reference point: learning rate 0.0047 and 160 sequences of 2,048 at 108M.
REFERENCE_SIZE = 108e6
REFERENCE_LR = 0.0047
REFERENCE_BATCH = 160
BATCH_MULTIPLE = 32


@dataclasses.dataclass(frozen=True)
class Shape:
  """A decoder's shape: width, depth, heads and the SwiGLU hidden size (of each of its gate and
  up projections; OLMo's "8d split in two" is mlp_hidden = 4d)."""

  d_model: int
  num_layers: int
  num_heads: int
  mlp_hidden: int

  @property
  def head_dim(self) -> int:
    return self.d_model // self.num_heads


@dataclasses.dataclass(frozen=True)
class Preset:
  """A named size: its shape and nominal parameter count N (None: counted at NAMING_VOCAB)."""

  shape: Shape
  nominal: float | None = None

  def nominal_size(self, block: str = "olmo2") -> float:
    if self.nominal is not None:
      return self.nominal
    return non_embedding_params(self.shape, block) + NAMING_VOCAB * self.shape.d_model


def _shape(d: int, layers: int, heads: int) -> Shape:
  return Shape(d, layers, heads, 4 * d)


# The 4B shape (ours; the paper gives only its depth, 16): head_dim 128 as at 1B, and the width,
# a multiple of 128, at which 16 layers plus one 50K embedding count 4.0B.
PRESETS: dict[str, Preset] = {
    "4M": Preset(_shape(64, 8, 8), 4e6),
    "6M": Preset(_shape(96, 8, 8), 6e6),
    "8M": Preset(_shape(128, 8, 8), 8e6),
    "10M": Preset(_shape(144, 8, 8), 10e6),
    "14M": Preset(_shape(192, 8, 8), 14e6),
    "16M": Preset(_shape(208, 8, 8), 16e6),
    "20M": Preset(_shape(192, 16, 8), 20e6),
    "60M": Preset(_shape(384, 16, 12), 60e6),
    "90M": Preset(_shape(528, 16, 12), 90e6),
    "150M": Preset(_shape(768, 12, 12), 150e6),
    "300M": Preset(_shape(1024, 16, 16), 300e6),
    "530M": Preset(_shape(1344, 16, 16), 530e6),
    "750M": Preset(_shape(1536, 16, 16), 750e6),
    "1B": Preset(_shape(2048, 16, 16), 1e9),
    "4B": Preset(_shape(3840, 16, 30), 4e9),
    # CPU sizes for defaults and tests, counted like the ladder (at NAMING_VOCAB).
    "cpu_d16": Preset(_shape(16, 1, 2)),
    # cpu_d16 at the depth of the other CPU sizes: a ladder of one depth (2 layers).
    "cpu_d16_l2": Preset(_shape(16, 2, 2)),
    "cpu_d32": Preset(_shape(32, 2, 4)),
    "cpu_d64": Preset(_shape(64, 2, 4)),
    "cpu_d128": Preset(_shape(128, 2, 4)),
}


def default_learning_rate(nominal: float) -> float:
  """The ladder's peak learning rate 0.0047 (N / 108M)^(-1/3)."""
  return REFERENCE_LR * (nominal / REFERENCE_SIZE) ** (-1 / 3)


def default_batch_size(nominal: float) -> int:
  """The ladder's batch 160 (N / 108M)^(2/3) sequences, rounded to a multiple of 32 (>= 32)."""
  raw = REFERENCE_BATCH * (nominal / REFERENCE_SIZE) ** (2 / 3)
  return max(BATCH_MULTIPLE, BATCH_MULTIPLE * round(raw / BATCH_MULTIPLE))


def norm_params_per_layer(d_model: int, block: str) -> int:
  """RMSNorm weights of one block: olmo2 norms the attention and MLP outputs and q and k (whole
  projections, each d_model wide); olmo1 norms the two block inputs."""
  return (4 if block == "olmo2" else 2) * d_model


def non_embedding_params(shape: Shape, block: str = "olmo2") -> int:
  """Parameters outside the input embedding and the LM head: L blocks and the final norm."""
  d, h = shape.d_model, shape.mlp_hidden
  per_layer = 4 * d * d + 3 * d * h + norm_params_per_layer(d, block)
  return shape.num_layers * per_layer + d


def total_params(shape: Shape, vocab_size: int, block: str = "olmo2",
                 tie_embeddings: bool = False) -> int:
  """Every parameter: blocks, final norm, input embedding and (untied) LM head."""
  embeddings = (1 if tie_embeddings else 2) * vocab_size * shape.d_model
  return non_embedding_params(shape, block) + embeddings


def flops_per_token(shape: Shape, vocab_size: int, seq_len: int, block: str = "olmo2") -> float:
  """Training FLOPs per token, 6 N_nonemb + 6 d V + 12 L d T (forward and backward; the
  attention scores counted for every query-key pair, as is usual for utilisation)."""
  d, layers = shape.d_model, shape.num_layers
  return (6 * non_embedding_params(shape, block) + 6 * d * vocab_size
          + 12 * layers * d * seq_len)


def size_name(count: float) -> str:
  """A parameter count as the ladder writes it: 3.75M, 1.18B, 49.2K."""
  for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
    if count >= scale:
      return f"{count / scale:.3g}{unit}"
  return str(int(count))
