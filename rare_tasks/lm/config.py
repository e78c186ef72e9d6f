"""The config of a language-model study: every field, its default, the checks run before any
compute, and the resolution of a preset into the values config.json records.

Study files in `configs/` start from `base_config()` and change values. `config.model.preset`
sets the shape (d_model, num_layers, num_heads, mlp_hidden) and the ladder's learning rate and
batch size; any of those fields set explicitly wins, and `resolve` fills in the rest.
"""

from __future__ import annotations

from typing import Any

import ml_collections
from ml_collections.config_dict import placeholder

from rare_tasks.core import config as checks
from rare_tasks.core.config import check, is_int
from rare_tasks.lm import data, ladder
from rare_tasks.lm.model import ATTENTION, BLOCKS, DTYPES

STUDIES = ("lm_pretrain",)
# Fields that do not change what is trained: a resume may change them.
NOT_IDENTITY = ("checkpoint_interval_s", "data.cache_dir", "log")
START_FROM = "rare_tasks.lm.config.base_config()"
# Fields a preset fills in when they are unset (None).
SHAPE_FIELDS = ("d_model", "num_layers", "num_heads", "mlp_hidden")


def model_schema(preset: bool = True) -> ml_collections.ConfigDict:
  """The decoder's fields. With `preset`, the ladder preset and the shape fields it fills in;
  without, only the fields a study sets once for all its sizes (the injection study's grid
  names the sizes)."""
  m = ml_collections.ConfigDict()
  if preset:
    m.preset = "cpu_d32"
  m.block, m.dtype, m.tie_embeddings, m.remat, m.attention = (
      "olmo2", "auto", False, False, "auto")
  # A Hugging Face OLMo-2 checkpoint folder (config.json + *.safetensors) to start from instead
  # of a random init; its shape, vocabulary and embedding tying must be the run's.
  m.init_from = ""
  if preset:
    for field in SHAPE_FIELDS:
      m[field] = placeholder(int)
  return m


def data_schema() -> ml_collections.ConfigDict:
  """The background text. "synthetic": the order-2 Markov source (rare_tasks.lm.data.markov),
  generated on the device; num_states .. eos_probability set its size and how much it takes to
  learn. "jsonl": Dolma-format shards under `path`; "python_stdlib": the running Python's
  standard library. Real text is tokenised by `tokenizer` (a tokenizer.json; '': a byte-level
  BPE of vocab_size trained on the corpus) into a cache under `cache_dir` ('': the user's cache
  folder, ~/.cache/rare_tasks)."""
  return ml_collections.ConfigDict(dict(
      corpus="synthetic", vocab_size=512, seq_len=64, seed=0, num_states=2048,
      context_classes=4, successors=8, zipf_exponent=1.0, eos_probability=0.01,
      validation_rows=256, path="", tokenizer="", cache_dir=""))


def train_schema() -> ml_collections.ConfigDict:
  """The optimisation; batch_size and learning_rate unset take the ladder's values for the
  preset's size."""
  t = ml_collections.ConfigDict(dict(
      steps=1000, warmup_steps=100, final_lr_fraction=0.01, weight_decay=0.05, b1=0.9,
      b2=0.95, eps=1e-8, grad_clip=1.0, z_loss=1e-5, steps_per_dispatch=50))
  t.batch_size = placeholder(int)
  t.learning_rate = placeholder(float)
  return t


def mesh_schema() -> ml_collections.ConfigDict:
  """Devices: the ensemble's members over "member" (0: as many devices as split them evenly),
  each weight matrix over "fsdp"; the batch over the devices left ("data") and fsdp."""
  return ml_collections.ConfigDict(dict(members=0, fsdp=1))


def run_fields() -> dict[str, Any]:
  """The run's own fields: steps between evaluations, the least seconds between two
  checkpoints (always one at the end), and what is logged beside metrics.jsonl
  (log.tensorboard: every member's headline measurements as TensorBoard scalars at each
  evaluation, in <workdir>/tensorboard/; rare_tasks.core.tensorboard)."""
  return dict(eval_every=100, checkpoint_interval_s=600.0,
              log=ml_collections.ConfigDict(dict(tensorboard=False)))


def base_config() -> ml_collections.ConfigDict:
  """Every field the pretraining study has, with CPU-sized defaults: the shared sub-schemas
  (model with its preset, data, train, mesh) and the run's own fields."""
  c = ml_collections.ConfigDict()
  c.study = "lm_pretrain"
  # One ensemble member per init seed; the members share every text batch.
  c.init_seeds = (0,)
  c.model, c.data, c.train, c.mesh = model_schema(), data_schema(), train_schema(), mesh_schema()
  c.update(run_fields())
  return c


def _optional(test: checks.Check) -> checks.Check:
  def run(field: str, v) -> None:
    if v is not None:
      test(field, v)
  return run


def _seeds(field: str, v) -> None:
  values = list(v) if isinstance(v, (list, tuple)) else [v]
  check(len(values) > 0 and all(is_int(s) and s >= 0 for s in values)
        and len(set(values)) == len(values), field, v,
        "a non-empty tuple of distinct integers >= 0 (one ensemble member each)")


_text = checks.rule(lambda v: isinstance(v, str), "a string ('' for none)")
_beta = checks.rule(lambda v: checks.is_real(v) and 0 <= v < 1, "a number in [0, 1)")

# The checks of each sub-schema, by dotted field; a study's table is their union and its own.
PRESET_CHECKS: dict[str, checks.Check] = {
    "model.preset": checks.choice(ladder.PRESETS),
    **{f"model.{f}": _optional(checks.positive_int) for f in SHAPE_FIELDS},
}
MODEL_CHECKS: dict[str, checks.Check] = {
    "model.block": checks.choice(BLOCKS),
    "model.dtype": checks.choice(("auto", *DTYPES)),
    "model.tie_embeddings": checks.boolean,
    "model.remat": checks.boolean,
    "model.attention": checks.choice(ATTENTION),
    "model.init_from": _text,
}
DATA_CHECKS: dict[str, checks.Check] = {
    "data.corpus": checks.choice(data.CORPORA),
    "data.vocab_size": checks.int_at_least(3),
    "data.seq_len": checks.int_at_least(4),
    "data.seed": checks.nonneg_int,
    "data.num_states": checks.positive_int,
    "data.context_classes": checks.positive_int,
    "data.successors": checks.positive_int,
    "data.zipf_exponent": checks.nonneg_real,
    "data.eos_probability": checks.open_unit,
    "data.validation_rows": checks.positive_int,
    "data.path": _text,
    "data.tokenizer": _text,
    "data.cache_dir": _text,
}
TRAIN_CHECKS: dict[str, checks.Check] = {
    "train.steps": checks.positive_int,
    "train.batch_size": _optional(checks.positive_int),
    "train.learning_rate": _optional(checks.positive_real),
    "train.warmup_steps": checks.nonneg_int,
    "train.final_lr_fraction": checks.fraction,
    "train.weight_decay": checks.nonneg_real,
    "train.b1": _beta,
    "train.b2": _beta,
    "train.eps": checks.positive_real,
    "train.grad_clip": checks.positive_real,
    "train.z_loss": checks.nonneg_real,
    "train.steps_per_dispatch": checks.positive_int,
}
MESH_CHECKS: dict[str, checks.Check] = {
    "mesh.members": checks.nonneg_int,
    "mesh.fsdp": checks.positive_int,
}
RUN_CHECKS: dict[str, checks.Check] = {
    "eval_every": checks.positive_int,
    "checkpoint_interval_s": checks.nonneg_real,
    "log.tensorboard": checks.boolean,
}
FIELD_CHECKS: dict[str, checks.Check] = {
    "study": checks.choice(STUDIES),
    "init_seeds": _seeds,
    **PRESET_CHECKS, **MODEL_CHECKS, **DATA_CHECKS, **TRAIN_CHECKS, **MESH_CHECKS, **RUN_CHECKS,
}


def resolve(config: ml_collections.ConfigDict, platform: str) -> ml_collections.ConfigDict:
  """A checked copy of `config` with the preset's values in every unset field and the compute
  dtype chosen for `platform` ("auto": float32 on CPU, bfloat16 on GPU and TPU).

  Raises ConfigError, naming the field, for anything not allowed.
  """
  checks.check_fields(config, FIELD_CHECKS, start_from=START_FROM)
  c = ml_collections.ConfigDict(config.to_dict())
  preset = ladder.PRESETS[c.model.preset]
  shape = dict(zip(SHAPE_FIELDS, (preset.shape.d_model, preset.shape.num_layers,
                                  preset.shape.num_heads, preset.shape.mlp_hidden)))
  for field in SHAPE_FIELDS:
    if c.model[field] is None:
      c.model[field] = shape[field]
  nominal = preset.nominal_size(c.model.block)
  if c.train.learning_rate is None:
    c.train.learning_rate = ladder.default_learning_rate(nominal)
  if c.train.batch_size is None:
    c.train.batch_size = ladder.default_batch_size(nominal)
  if c.model.dtype == "auto":
    c.model.dtype = "float32" if platform == "cpu" else "bfloat16"
  _check_shape(c)
  return c


def _check_shape(c: ml_collections.ConfigDict) -> None:
  m = c.model
  check(m.d_model % m.num_heads == 0, "model.num_heads", m.num_heads,
        f"a divisor of model.d_model = {m.d_model}")
  head_dim = m.d_model // m.num_heads
  check(head_dim % 2 == 0, "model.num_heads", m.num_heads,
        f"heads whose head_dim (d_model / heads = {head_dim}) is even, for RoPE's pairs")
  check(c.eval_every <= c.train.steps, "eval_every", c.eval_every,
        f"at most train.steps = {c.train.steps}")
  check_text_fields(c)


def check_text_fields(c: ml_collections.ConfigDict) -> None:
  """ConfigError for a real-text field set where data.corpus does not read it."""
  d = c.data
  check(not d.path or d.corpus == "jsonl", "data.path", d.path,
        f"'' with data.corpus = {d.corpus!r} (only 'jsonl' reads shards from a path)")
  check(not d.tokenizer or d.corpus in data.TEXT_CORPORA, "data.tokenizer", d.tokenizer,
        f"'' with data.corpus = {d.corpus!r} (the synthetic source has its own token ids)")


def shape_of(c: ml_collections.ConfigDict) -> ladder.Shape:
  """The resolved config's decoder shape."""
  return ladder.Shape(*(c.model[f] for f in SHAPE_FIELDS))


def check_batch(c: ml_collections.ConfigDict, split: int, num_devices: int) -> None:
  """ConfigError unless the global batch splits evenly over the data x fsdp axes."""
  b = c.train.batch_size
  check(b % split == 0, "train.batch_size", b,
        f"a multiple of {split} (the batch's rows are split over the data x fsdp axes of "
        f"{num_devices} devices)")
  check(c.data.validation_rows % split == 0, "data.validation_rows", c.data.validation_rows,
        f"a multiple of {split} (split like the batch)")


def check_mesh(c: ml_collections.ConfigDict, num_devices: int, members: int, fsdp: int) -> None:
  """ConfigError unless `members` models with each weight over `fsdp` devices fit the mesh
  fields on `num_devices` devices (mesh.fsdp is named for a bad fsdp: the value comes from it,
  or from a study that needs every device)."""
  check(num_devices % fsdp == 0, "mesh.fsdp", fsdp,
        f"a divisor of the device count {num_devices}")
  if c.mesh.members:
    free = num_devices // fsdp
    check(free % c.mesh.members == 0 and members % c.mesh.members == 0, "mesh.members",
          c.mesh.members, f"0 (automatic) or a divisor of both the members ({members}) and "
          f"the devices fsdp leaves ({free})")
