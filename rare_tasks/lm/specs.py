"""What every language-model study derives from a resolved config before training: the decoder
and optimisation specs, the ensemble's mesh and trainer, model.init_from's parameters, the run's
info (parameter counts, FLOPs, the source, the mesh), and the files that describe the text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import ml_collections
from jax.sharding import Mesh

from rare_tasks.core import workdir
from rare_tasks.core.config import ConfigError
from rare_tasks.lm import config as lm_config
from rare_tasks.lm import data, hf, ladder, sharding
from rare_tasks.lm.model import Model, ModelSpec, Params
from rare_tasks.lm.trainer import Trainer, TrainSpec

CHECKPOINTS_DIR = "checkpoints"
RUN_FILE = "run.json"


def model_spec(c: ml_collections.ConfigDict, vocab_size: int) -> ModelSpec:
  """The decoder of a resolved config over a source's vocabulary (for real text, the
  tokenizer's size padded to a multiple of 128; for the synthetic source, data.vocab_size)."""
  m = c.model
  return ModelSpec(lm_config.shape_of(c), vocab_size, block=m.block, dtype=m.dtype,
                   tie_embeddings=m.tie_embeddings, remat=m.remat, attention=m.attention)


def train_spec(c: ml_collections.ConfigDict) -> TrainSpec:
  """The optimisation of a resolved config: every train field but the batch and dispatch."""
  t = c.train
  return TrainSpec(steps=t.steps, learning_rate=t.learning_rate, warmup_steps=t.warmup_steps,
                   final_lr_fraction=t.final_lr_fraction, weight_decay=t.weight_decay, b1=t.b1,
                   b2=t.b2, eps=t.eps, grad_clip=t.grad_clip, z_loss=t.z_loss)


def ensemble_mesh(c: ml_collections.ConfigDict, num_members: int, devices: list[jax.Device],
                  fsdp: int) -> Mesh:
  """The mesh of `num_members` decoders of a resolved config on `devices`: the members over
  mesh.members devices (0: as many as split them evenly), each weight matrix over `fsdp`, the
  batch over the rest. ConfigError, naming the field, for a mesh or batch the devices cannot
  split."""
  lm_config.check_mesh(c, len(devices), num_members, fsdp)
  split = c.mesh.members or sharding.member_axis_size(num_members, len(devices), fsdp)
  mesh = sharding.make_mesh(devices, split, fsdp)
  lm_config.check_batch(c, sharding.batch_split(mesh), len(devices))
  return mesh


def ensemble_trainer(c: ml_collections.ConfigDict, vocab_size: int, num_members: int,
                     mesh: Mesh) -> Trainer:
  """The trainer of `num_members` decoders of a resolved config over a vocabulary, on `mesh`
  (from `ensemble_mesh`). Traced, not compiled."""
  return Trainer(Model(model_spec(c, vocab_size)), train_spec(c), num_members, mesh)


def checkpoint_of(c: ml_collections.ConfigDict) -> tuple[Model, Params] | None:
  """model.init_from's checkpoint (None for a random init); ConfigError naming the field for
  one that cannot be read."""
  if not c.model.init_from:
    return None
  try:
    return hf.load(c.model.init_from)
  except ConfigError as e:  # name the field that pointed at the checkpoint
    raise ConfigError(f"config.model.init_from = {c.model.init_from!r}: {e}") from None


def initial_params(c: ml_collections.ConfigDict, spec: ModelSpec,
                   checkpoint: tuple[Model, Params] | None = None) -> Params | None:
  """The parameters of model.init_from's checkpoint (read here unless given), refused unless
  the run's decoder can hold them; None for a random init."""
  if not c.model.init_from:
    return None
  model, params = checkpoint if checkpoint is not None else checkpoint_of(c)
  hf.check_compatible(model.spec, spec, c.model.init_from)
  return params


def total_params(spec: ModelSpec) -> int:
  """The decoder's parameter count, embeddings included."""
  return ladder.total_params(spec.shape, spec.vocab_size, spec.block, spec.tie_embeddings)


def size_info(c: ml_collections.ConfigDict, spec: ModelSpec) -> dict[str, Any]:
  """What a size costs: its parameter counts, training FLOPs per token and tokens per step."""
  preset = ladder.PRESETS[c.model.preset]
  return {
      "params": {"total": total_params(spec),
                 "non_embedding": ladder.non_embedding_params(spec.shape, spec.block),
                 "nominal": preset.nominal_size(spec.block),
                 "nominal_counts": f"non-embedding + one {ladder.NAMING_VOCAB}-row embedding"},
      "flops_per_token": ladder.flops_per_token(spec.shape, spec.vocab_size, c.data.seq_len,
                                                spec.block),
      "tokens_per_step": c.train.batch_size * c.data.seq_len,
  }


def run_info(c: ml_collections.ConfigDict, spec: ModelSpec, source: data.TextSource,
             mesh) -> dict[str, Any]:
  """What a run derives from its config: parameter counts, FLOPs, the source, the mesh."""
  return {
      **size_info(c, spec),
      "source": source.describe(),
      "loss_floor": source.loss_floor(),
      "mesh": dict(mesh.shape),
      "platform": mesh.devices.flat[0].platform,
  }


def keep_text(wd: Path, source: data.TextSource, info: dict[str, Any]) -> None:
  """run.json, and for real text the tokenizer, in the work directory; a run resumed on a
  corpus that changed since its checkpoints were written is refused."""
  old = workdir.read_json(wd / RUN_FILE)
  if old is not None and (wd / CHECKPOINTS_DIR).exists():
    data.check_unchanged(source, old.get("source") or {})
  data.keep_tokenizer(source, wd)
  workdir.write_text(wd / RUN_FILE, json.dumps(info, indent=2, sort_keys=True) + "\n")
