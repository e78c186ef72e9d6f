"""Import and export of OLMo-2 checkpoints in the Hugging Face layout (`Olmo2ForCausalLM`): a
directory with config.json and model.safetensors (or shards named by
model.safetensors.index.json), read and written with safetensors' numpy API; no torch.

Our block "olmo2" is HF Olmo2 tensor for tensor: attention_norm / mlp_norm are HF's
post_attention_layernorm / post_feedforward_layernorm, q_norm / k_norm are one RMSNorm over the
whole projection, RoPE rotates halves. A torch Linear weight is (out, in), our Dense kernel
(in, out): every matrix is transposed on the way, and per-layer tensors are stacked along a
leading num_layers axis. Block "olmo1" has no HF counterpart here (HF's OLMo-1 uses a
non-parametric LayerNorm, not our RMSNorm with weights); nor does the decoder hold grouped-query
attention, RoPE scaling, biases or an activation other than SiLU: each is refused with a
ConfigError naming the field.

`save` writes config.json as transformers 5 does (`rope_parameters: {"rope_type": "default",
"rope_theta": ...}` and `dtype`), plus the older top-level `rope_theta` and `torch_dtype` that
transformers 4 reads (without them it would silently use theta 10,000); `load` reads either.
Weights load from float32, float16 or bfloat16 into float32 (safetensors 0.8 returns
ml_dtypes.bfloat16 arrays; with a release that cannot, the file is parsed by hand); `save` writes
float32.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from rare_tasks.core import disk
from rare_tasks.core.config import ConfigError, is_int, is_real
from rare_tasks.lm.ladder import Shape
from rare_tasks.lm.model import Model, ModelSpec, Params

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
ARCHITECTURE = "Olmo2ForCausalLM"
# HF's defaults for fields a config.json may leave out (Olmo2Config, PreTrainedConfig).
HF_ROPE_THETA = 10_000.0
HF_NORM_EPS = 1e-5
# config.json fields `save` may be given (they do not change the computation); OLMo-2's context.
EXTRA_FIELDS = {"max_position_embeddings": 4096, "initializer_range": 0.02,
                "pad_token_id": None, "bos_token_id": None, "eos_token_id": None}
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
# What the hand parser (for safetensors releases without numpy bfloat16) reads, by header name.
RAW_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16, "F64": np.float64}
# Buffers older exports carry that are recomputed, not weights.
IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)
# (name inside model.layers.{i}, path under params["layers"], stored transposed)
LAYER_TENSORS = (
    ("self_attn.q_proj.weight", ("attention", "q", "kernel"), True),
    ("self_attn.k_proj.weight", ("attention", "k", "kernel"), True),
    ("self_attn.v_proj.weight", ("attention", "v", "kernel"), True),
    ("self_attn.o_proj.weight", ("attention", "o", "kernel"), True),
    ("self_attn.q_norm.weight", ("attention", "q_norm", "weight"), False),
    ("self_attn.k_norm.weight", ("attention", "k_norm", "weight"), False),
    ("post_attention_layernorm.weight", ("attention_norm", "weight"), False),
    ("post_feedforward_layernorm.weight", ("mlp_norm", "weight"), False),
    ("mlp.gate_proj.weight", ("mlp", "gate", "kernel"), True),
    ("mlp.up_proj.weight", ("mlp", "up", "kernel"), True),
    ("mlp.down_proj.weight", ("mlp", "down", "kernel"), True),
)


def _refuse(where: Any, field: str, value: Any, allowed: str) -> ConfigError:
  return ConfigError(f"{where}: {field} = {value!r}: allowed: {allowed}")


def tensor_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
  """{HF tensor name: shape} of the checkpoint of `spec` (torch layout, (out, in) matrices)."""
  s, v = spec.shape, spec.vocab_size
  d, h = s.d_model, s.mlp_hidden
  per_layer = {"self_attn.q_proj.weight": (d, d), "self_attn.k_proj.weight": (d, d),
               "self_attn.v_proj.weight": (d, d), "self_attn.o_proj.weight": (d, d),
               "self_attn.q_norm.weight": (d,), "self_attn.k_norm.weight": (d,),
               "post_attention_layernorm.weight": (d,), "post_feedforward_layernorm.weight": (d,),
               "mlp.gate_proj.weight": (h, d), "mlp.up_proj.weight": (h, d),
               "mlp.down_proj.weight": (d, h)}
  out = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,)}
  for i in range(s.num_layers):
    out.update({f"model.layers.{i}.{name}": shape for name, shape in per_layer.items()})
  if not spec.tie_embeddings:
    out["lm_head.weight"] = (v, d)
  return out


def hf_config(spec: ModelSpec, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """The config.json of `spec` (see the module docstring for the rope and dtype fields)."""
  if spec.block != "olmo2":
    raise ConfigError(f"model.block = {spec.block!r}: allowed: 'olmo2' (the Hugging Face "
                      "Olmo-1 layout uses a non-parametric LayerNorm, not this RMSNorm)")
  unknown = sorted(set(extra or {}) - set(EXTRA_FIELDS))
  if unknown:
    raise ConfigError(f"hf.save extra = {unknown}: allowed: keys of {sorted(EXTRA_FIELDS)}")
  s = spec.shape
  return {"architectures": [ARCHITECTURE], "model_type": "olmo2", "hidden_size": s.d_model,
          "intermediate_size": s.mlp_hidden, "num_hidden_layers": s.num_layers,
          "num_attention_heads": s.num_heads, "num_key_value_heads": s.num_heads,
          "vocab_size": spec.vocab_size, "rms_norm_eps": spec.norm_eps, "hidden_act": "silu",
          "attention_bias": False, "attention_dropout": 0.0,
          "tie_word_embeddings": spec.tie_embeddings,
          "rope_parameters": {"rope_type": "default", "rope_theta": spec.rope_theta},
          "rope_theta": spec.rope_theta, "dtype": "float32", "torch_dtype": "float32",
          "use_cache": True, **EXTRA_FIELDS, **(extra or {})}


def _rope_theta(config: Mapping[str, Any], where: Any) -> float:
  """The RoPE base of a config.json in either layout (HF's 10,000 when it names none)."""
  if config.get("rope_scaling") is not None:
    raise _refuse(where, "rope_scaling", config["rope_scaling"], "null (no RoPE scaling)")
  params = config.get("rope_parameters")
  theta = config.get("rope_theta", HF_ROPE_THETA)
  if params is not None:
    if not isinstance(params, Mapping):
      raise _refuse(where, "rope_parameters", params, "a mapping with rope_type and rope_theta")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind != "default":
      raise _refuse(where, "rope_parameters.rope_type", kind, "'default' (no RoPE scaling)")
    if "rope_theta" in config and params.get("rope_theta", theta) != theta:
      raise _refuse(where, "rope_parameters.rope_theta", params.get("rope_theta"),
                    f"the top-level rope_theta {theta!r}, when both are given")
    theta = params.get("rope_theta", theta)
  if not (is_real(theta) and theta > 0):
    raise _refuse(where, "rope_theta", theta, "a finite number > 0")
  return float(theta)


def spec_of(config: Mapping[str, Any], where: Any = CONFIG) -> ModelSpec:
  """The ModelSpec (block olmo2, float32) of an HF Olmo2 config.json, refusing (ConfigError,
  naming the field) anything this decoder cannot represent."""
  if config.get("model_type") != "olmo2":
    raise _refuse(where, "model_type", config.get("model_type"), "'olmo2'")
  if config.get("architectures") not in (None, [ARCHITECTURE]):
    raise _refuse(where, "architectures", config["architectures"], f"[{ARCHITECTURE!r}]")
  sizes = {}
  for field in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "vocab_size"):
    sizes[field] = config.get(field)
    if not (is_int(sizes[field]) and sizes[field] > 0):
      raise _refuse(where, field, sizes[field], "an integer > 0")
  d, heads = sizes["hidden_size"], sizes["num_attention_heads"]
  if d % heads or (d // heads) % 2:
    raise _refuse(where, "hidden_size", d, f"a multiple of num_attention_heads {heads} with an "
                  "even head_dim (for RoPE)")
  for field, default, allowed in (
      ("num_key_value_heads", heads, f"num_attention_heads {heads} (no grouped-query attention)"),
      ("head_dim", d // heads, f"hidden_size / num_attention_heads = {d // heads}"),
      ("hidden_act", "silu", "'silu'"), ("attention_bias", False, "false (no biases)")):
    value = config.get(field)
    if value is not None and value != default:
      raise _refuse(where, field, value, allowed)
  eps, tie = config.get("rms_norm_eps", HF_NORM_EPS), config.get("tie_word_embeddings", False)
  if not (is_real(eps) and eps > 0):
    raise _refuse(where, "rms_norm_eps", eps, "a finite number > 0")
  if not isinstance(tie, bool):
    raise _refuse(where, "tie_word_embeddings", tie, "true or false")
  shape = Shape(d, sizes["num_hidden_layers"], heads, sizes["intermediate_size"])
  return ModelSpec(shape, sizes["vocab_size"], block="olmo2", dtype="float32",
                   tie_embeddings=tie, rope_theta=_rope_theta(config, where),
                   norm_eps=float(eps))


def to_hf(spec: ModelSpec, params: Params) -> dict[str, np.ndarray]:
  """{HF tensor name: float32 array} of our params (numpy or jax), matrices as (out, in)."""
  hf_config(spec)  # refuses a block this layout cannot hold
  f32 = lambda a: np.ascontiguousarray(np.asarray(a, np.float32))  # noqa: E731
  out = {"model.embed_tokens.weight": f32(params["embedding"]),
         "model.norm.weight": f32(params["final_norm"]["weight"])}
  for name, path, transposed in LAYER_TENSORS:
    stacked = params["layers"]
    for key in path:
      stacked = stacked[key]
    stacked = np.asarray(stacked, np.float32)
    for i in range(spec.shape.num_layers):
      out[f"model.layers.{i}.{name}"] = f32(stacked[i].T if transposed else stacked[i])
  if not spec.tie_embeddings:
    out["lm_head.weight"] = f32(np.asarray(params["lm_head"]["kernel"]).T)
  return out


def from_hf(spec: ModelSpec, tensors: Mapping[str, np.ndarray], where: Any = "") -> Params:
  """Our params (float32 numpy, layers stacked on axis 0, kernels (in, out)) from HF tensors,
  refusing (ConfigError naming the tensor) a missing, unexpected or misshapen one."""
  expected = tensor_shapes(spec)
  tensors = {k: v for k, v in tensors.items() if not k.endswith(IGNORED_SUFFIXES)}
  if spec.tie_embeddings and "lm_head.weight" in tensors:
    head, embedding = tensors["lm_head.weight"], tensors.get("model.embed_tokens.weight")
    if embedding is None or not np.array_equal(np.asarray(head, np.float32),
                                               np.asarray(embedding, np.float32)):
      raise _refuse(where, "tensor lm_head.weight", "differs from model.embed_tokens.weight",
                    "absent or equal to it under tie_word_embeddings")
    tensors = {k: v for k, v in tensors.items() if k != "lm_head.weight"}
  for name in sorted(expected):
    if name not in tensors:
      raise _refuse(where, f"tensor {name}", "missing", f"present, of shape {expected[name]}")
    if tuple(tensors[name].shape) != expected[name]:
      raise _refuse(where, f"tensor {name} shape", tuple(tensors[name].shape),
                    f"{expected[name]} (from config.json)")
    if tensors[name].dtype.name not in FLOAT_DTYPES:
      raise _refuse(where, f"tensor {name} dtype", tensors[name].dtype.name, str(FLOAT_DTYPES))
  if unexpected := sorted(set(tensors) - set(expected)):
    raise _refuse(where, "tensors", unexpected[:3], "only those of the Olmo2 layout; "
                  f"{len(unexpected)} unexpected")
  f32 = lambda name: np.array(tensors[name], np.float32)  # noqa: E731 (a copy, not a mmap view)
  layers: dict[str, Any] = {}
  for name, path, transposed in LAYER_TENSORS:
    per_layer = [f32(f"model.layers.{i}.{name}") for i in range(spec.shape.num_layers)]
    node = layers
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = np.stack([a.T if transposed else a for a in per_layer])
  params = {"embedding": f32("model.embed_tokens.weight"), "layers": layers,
            "final_norm": {"weight": f32("model.norm.weight")}}
  if not spec.tie_embeddings:
    params["lm_head"] = {"kernel": np.ascontiguousarray(f32("lm_head.weight").T)}
  return params


def _read_json(path: Path) -> Any:
  try:
    return json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ConfigError(f"{path}: not readable as JSON ({type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''})") from None


def _weight_files(path: Path) -> list[Path]:
  """The safetensors files of a checkpoint: model.safetensors, else its index's shards."""
  if (path / WEIGHTS).is_file():
    return [path / WEIGHTS]
  if not (path / INDEX).is_file():
    raise ConfigError(f"{path}: no {WEIGHTS} or {INDEX}: allowed: a Hugging Face checkpoint "
                      "directory with its safetensors weights")
  index = _read_json(path / INDEX)
  weight_map = index.get("weight_map") if isinstance(index, dict) else None
  if not isinstance(weight_map, dict) or not weight_map:
    raise _refuse(path / INDEX, "weight_map", weight_map, "a mapping {tensor name: file}")
  files = [path / name for name in sorted(set(map(str, weight_map.values())))]
  for file in files:
    if not file.is_file():
      raise _refuse(path / INDEX, "weight_map file", file.name, "a file in the directory")
  return files


def _read_raw(file: Path) -> dict[str, np.ndarray]:
  """A safetensors file parsed by hand, memory-mapped: an 8-byte little-endian header length, a
  JSON header {name: {dtype, shape, data_offsets}}, then the little-endian data."""
  raw = np.memmap(file, np.uint8, mode="r")
  length = int.from_bytes(raw[:8].tobytes(), "little")
  header = json.loads(raw[8:8 + length].tobytes())
  header.pop("__metadata__", None)
  out = {}
  for name, info in header.items():
    if info["dtype"] not in RAW_DTYPES:
      raise _refuse(file, f"tensor {name} dtype", info["dtype"], str(sorted(RAW_DTYPES)))
    start, end = (8 + length + offset for offset in info["data_offsets"])
    out[name] = raw[start:end].view(RAW_DTYPES[info["dtype"]]).reshape(info["shape"])
  return out


def _read_file(file: Path) -> dict[str, np.ndarray]:
  """{name: array as stored} through safetensors' numpy API, or by hand where this release of
  safetensors cannot give numpy bfloat16 (0.5.3: "data type 'bfloat16' not understood")."""
  try:
    try:
      with safe_open(file, framework="np") as f:
        return {name: f.get_tensor(name) for name in f.keys()}
    except TypeError:
      return _read_raw(file)
  except (OSError, SafetensorError, ValueError, KeyError, TypeError) as e:
    if isinstance(e, ConfigError):
      raise
    raise ConfigError(f"{file}: not a readable safetensors file ({e})") from None


def read_tensors(path: str | Path) -> dict[str, np.ndarray]:
  """{name: array as stored (float32, float16, ml_dtypes.bfloat16, ...)} of a checkpoint's
  safetensors file or shards; a name in two shards is refused."""
  out: dict[str, np.ndarray] = {}
  for file in _weight_files(Path(path)):
    shard = _read_file(file)
    if twice := sorted(set(shard) & set(out)):
      raise _refuse(file, f"tensor {twice[0]}", "in two shards", "one file per tensor")
    out.update(shard)
  return out


def load(path: str | Path) -> tuple[Model, Params]:
  """The decoder of an HF Olmo2 checkpoint directory and its params (float32 numpy arrays in
  our layout); ConfigError naming the field or tensor for anything it cannot represent."""
  path = Path(path)
  if not path.is_dir():
    raise ConfigError(f"{path}: no such checkpoint directory; allowed: a Hugging Face checkpoint "
                      "folder (config.json and *.safetensors)")
  if not (path / CONFIG).is_file():
    raise ConfigError(f"{path}: no {CONFIG}: allowed: a Hugging Face checkpoint directory")
  config = _read_json(path / CONFIG)
  if not isinstance(config, dict):
    raise ConfigError(f"{path / CONFIG}: a {type(config).__name__}: allowed: a JSON object")
  spec = spec_of(config, path / CONFIG)
  return Model(spec), from_hf(spec, read_tensors(path), path)


def save(path: str | Path, model: Model, params: Params, *,
         extra: Mapping[str, Any] | None = None) -> None:
  """Writes `model` and `params` (numpy or jax) as an HF Olmo2 checkpoint: path/config.json and
  path/model.safetensors in float32, creating the directory. `extra` sets config.json fields
  that do not change the computation (EXTRA_FIELDS: token ids, max_position_embeddings)."""
  config = hf_config(model.spec, extra)
  tensors = to_hf(model.spec, params)
  path = Path(path)
  with disk.writing(path):  # a full disk: DiskFull naming the folder; saving again redoes it
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path / WEIGHTS, metadata={"format": "pt"})
    (path / CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def check_compatible(checkpoint: ModelSpec, run: ModelSpec, path: str | Path,
                     field: str = "model.init_from") -> None:
  """Refuses (ConfigError naming `field`) starting a run of spec `run` from a checkpoint of spec
  `checkpoint` unless vocabulary, shape, tying, RoPE base, norm eps and block agree."""
  where = f"config.{field} = {str(path)!r}"
  c, r = checkpoint, run
  if r.block != "olmo2":
    raise ConfigError(f"{where}: this run's block is {r.block!r}: allowed: 'olmo2' for an "
                      "Olmo2 checkpoint")
  if c.vocab_size != r.vocab_size:
    raise ConfigError(f"{where}: vocab_size {c.vocab_size}: this run's vocabulary is "
                      f"{r.vocab_size}")
  for name in ("d_model", "num_layers", "num_heads", "mlp_hidden"):
    if getattr(c.shape, name) != getattr(r.shape, name):
      raise ConfigError(f"{where}: {name} {getattr(c.shape, name)}: this run's {name} is "
                        f"{getattr(r.shape, name)}")
  if c.tie_embeddings != r.tie_embeddings:
    what = ("tied embeddings where the run is untied" if c.tie_embeddings else
            "untied embeddings where the run is tied")
    raise ConfigError(f"{where}: {what} (model.tie_embeddings = {r.tie_embeddings})")
  for name in ("rope_theta", "norm_eps"):
    if getattr(c, name) != getattr(r, name):
      raise ConfigError(f"{where}: {name} {getattr(c, name)!r}: this run's {name} is "
                        f"{getattr(r, name)!r}")
