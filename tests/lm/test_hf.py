"""The Hugging Face Olmo2 import/export: exact round trips (float32, tied, bfloat16 and float16
on disk, sharded), the published tensor names and config.json against HF's layout written out
here, a numpy forward pass of HF Olmo2 over the saved tensors, and every refusal."""

import dataclasses
import functools
import json

import chex
import jax
import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from rare_tasks.core.config import ConfigError
from rare_tasks.lm import hf
from rare_tasks.lm.ladder import Shape
from rare_tasks.lm.model import Model, ModelSpec

SHAPE = Shape(d_model=16, num_layers=2, num_heads=2, mlp_hidden=64)
VOCAB = 128
TOKENS = np.random.default_rng(0).integers(0, VOCAB, (2, 12))


@functools.cache
def _params(spec: ModelSpec, seed: int = 0):
  """Random params of `spec`'s tree (shapes from an abstract init, no compute): matrices
  N(0, 0.1), norm weights 1 + N(0, 0.5) (non-unit, so swapping two norms shows)."""
  rng = np.random.default_rng(seed)
  def draw(path, a):
    if "weight" in jax.tree_util.keystr(path):
      return (1 + 0.5 * rng.standard_normal(a.shape)).astype(np.float32)
    return (0.1 * rng.standard_normal(a.shape)).astype(np.float32)
  abstract = jax.eval_shape(Model(spec).init, jax.random.key(seed))
  return jax.tree_util.tree_map_with_path(draw, abstract)


@functools.partial(jax.jit, static_argnums=0)
def _logits(spec: ModelSpec, params, tokens):
  return Model(spec).apply(params, tokens)


def _saved(tmp_path, spec=None, name="ckpt"):
  spec = spec or ModelSpec(SHAPE, VOCAB)
  model, params = Model(spec), _params(spec)
  hf.save(tmp_path / name, model, params)
  return tmp_path / name, model, params


@pytest.mark.parametrize("tie", [False, True])
def test_save_then_load_gives_the_same_spec_and_identical_logits(tmp_path, tie):
  spec = ModelSpec(SHAPE, VOCAB, tie_embeddings=tie, rope_theta=10_000.0, norm_eps=1e-5)
  path, model, params = _saved(tmp_path, spec)
  loaded, loaded_params = hf.load(path)
  assert loaded.spec == spec
  chex.assert_trees_all_equal_shapes_and_dtypes(loaded_params, params)
  chex.assert_trees_all_equal(loaded_params, params)
  np.testing.assert_array_equal(_logits(loaded.spec, loaded_params, TOKENS),
                                _logits(model.spec, params, TOKENS))


@pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, np.float16])
def test_low_precision_weights_on_disk_load_as_float32_exactly(tmp_path, dtype):
  path, model, params = _saved(tmp_path)
  tensors = load_file(path / hf.WEIGHTS)
  save_file({k: v.astype(dtype) for k, v in tensors.items()}, path / hf.WEIGHTS)
  assert {v.dtype for v in load_file(path / hf.WEIGHTS).values()} == {np.dtype(dtype)}
  loaded, loaded_params = hf.load(path)
  rounded = jax.tree.map(lambda a: np.asarray(a).astype(dtype).astype(np.float32), params)
  assert {a.dtype for a in jax.tree.leaves(loaded_params)} == {np.dtype(np.float32)}
  np.testing.assert_array_equal(_logits(loaded.spec, loaded_params, TOKENS),
                                _logits(model.spec, rounded, TOKENS))


def test_the_hand_parser_reads_what_safetensors_reads(tmp_path, monkeypatch):
  path, _, _ = _saved(tmp_path)
  tensors = load_file(path / hf.WEIGHTS)
  mixed = {k: v.astype([np.float32, np.float16, ml_dtypes.bfloat16][i % 3])
           for i, (k, v) in enumerate(sorted(tensors.items()))}
  save_file(mixed, path / hf.WEIGHTS, metadata={"format": "pt"})
  chex.assert_trees_all_equal(hf._read_raw(path / hf.WEIGHTS), load_file(path / hf.WEIGHTS))
  expected = hf.load(path)[1]

  def old_safetensors(*args, **kwargs):  # safetensors 0.5 on a bfloat16 tensor
    raise TypeError("data type 'bfloat16' not understood")
  monkeypatch.setattr(hf, "safe_open", old_safetensors)
  chex.assert_trees_all_equal(hf.load(path)[1], expected)


# HF Olmo2ForCausalLM's state dict for hidden 16, intermediate 64, 2 layers, vocab 128.
HF_LAYER = {"self_attn.q_proj.weight": (16, 16), "self_attn.k_proj.weight": (16, 16),
            "self_attn.v_proj.weight": (16, 16), "self_attn.o_proj.weight": (16, 16),
            "self_attn.q_norm.weight": (16,), "self_attn.k_norm.weight": (16,),
            "post_attention_layernorm.weight": (16,), "post_feedforward_layernorm.weight": (16,),
            "mlp.gate_proj.weight": (64, 16), "mlp.up_proj.weight": (64, 16),
            "mlp.down_proj.weight": (16, 64)}
HF_TENSORS = {"model.embed_tokens.weight": (128, 16), "model.norm.weight": (16,),
              "lm_head.weight": (128, 16),
              **{f"model.layers.{i}.{k}": v for i in range(2) for k, v in HF_LAYER.items()}}
HF_CONFIG = {"architectures": ["Olmo2ForCausalLM"], "model_type": "olmo2", "hidden_size": 16,
             "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 2, "vocab_size": 128, "rms_norm_eps": 1e-6,
             "hidden_act": "silu", "attention_bias": False, "attention_dropout": 0.0,
             "tie_word_embeddings": False, "use_cache": True,
             "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
             "rope_theta": 500000.0, "dtype": "float32", "torch_dtype": "float32",
             "max_position_embeddings": 4096, "initializer_range": 0.02, "pad_token_id": None,
             "bos_token_id": None, "eos_token_id": None}


@pytest.mark.parametrize("tie", [False, True])
def test_the_published_tensors_and_config_are_hfs_olmo2_layout(tmp_path, tie):
  path, _, _ = _saved(tmp_path, ModelSpec(SHAPE, VOCAB, tie_embeddings=tie))
  tensors = load_file(path / hf.WEIGHTS)
  golden = {k: v for k, v in HF_TENSORS.items() if not (tie and k == "lm_head.weight")}
  assert {k: v.shape for k, v in tensors.items()} == golden
  assert {v.dtype for v in tensors.values()} == {np.dtype(np.float32)}
  assert json.loads((path / hf.CONFIG).read_text()) == {**HF_CONFIG, "tie_word_embeddings": tie}


def test_save_sets_the_extra_fields_and_refuses_the_others(tmp_path):
  model = Model(ModelSpec(SHAPE, VOCAB))
  params = _params(model.spec)
  hf.save(tmp_path / "a", model, params, extra={"eos_token_id": 5, "max_position_embeddings": 64})
  config = json.loads((tmp_path / "a" / hf.CONFIG).read_text())
  assert (config["eos_token_id"], config["max_position_embeddings"]) == (5, 64)
  with pytest.raises(ConfigError, match="extra = \\['hidden_size'\\]"):
    hf.save(tmp_path / "b", model, params, extra={"hidden_size": 8})


def _rms(x, w, eps):
  return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * w


def _rotate_half(x):
  half = x.shape[-1] // 2
  return np.concatenate([-x[..., half:], x[..., :half]], -1)


def _hf_olmo2_logits(tensors, config, tokens):
  """HF Olmo2ForCausalLM's forward pass of one row (T,) in float64, from HF-named tensors."""
  t = {k: np.asarray(v, np.float64) for k, v in tensors.items()}
  eps, heads = config["rms_norm_eps"], config["num_attention_heads"]
  theta = config["rope_parameters"]["rope_theta"]
  x = t["model.embed_tokens.weight"][tokens]
  length, d = x.shape
  dim = d // heads
  inv_freq = 1.0 / theta ** (np.arange(0, dim, 2) / dim)
  emb = np.concatenate([np.outer(np.arange(length), inv_freq)] * 2, -1)  # (T, dim)
  cos, sin = np.cos(emb)[None], np.sin(emb)[None]
  for i in range(config["num_hidden_layers"]):
    w = lambda n, i=i: t[f"model.layers.{i}.{n}.weight"]  # noqa: E731
    split = lambda a: a.reshape(length, heads, dim).transpose(1, 0, 2)  # noqa: E731
    q = split(_rms(x @ w("self_attn.q_proj").T, w("self_attn.q_norm"), eps))
    k = split(_rms(x @ w("self_attn.k_proj").T, w("self_attn.k_norm"), eps))
    v = split(x @ w("self_attn.v_proj").T)
    q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
    scores = q @ k.transpose(0, 2, 1) * dim ** -0.5
    scores = np.where(np.tril(np.ones((length, length), bool)), scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    out = (probs / probs.sum(-1, keepdims=True)) @ v  # (heads, T, dim)
    attn = out.transpose(1, 0, 2).reshape(length, d) @ w("self_attn.o_proj").T
    x = x + _rms(attn, w("post_attention_layernorm"), eps)
    gate, up = x @ w("mlp.gate_proj").T, x @ w("mlp.up_proj").T
    mlp = (gate / (1 + np.exp(-gate)) * up) @ w("mlp.down_proj").T
    x = x + _rms(mlp, w("post_feedforward_layernorm"), eps)
  x = _rms(x, t["model.norm.weight"], eps)
  return x @ t.get("lm_head.weight", t["model.embed_tokens.weight"]).T


def _swapped(tensors, a, b):
  swap = lambda k: k.replace(a, "\0").replace(b, a).replace("\0", b)  # noqa: E731
  return {swap(k): v for k, v in tensors.items()}


@pytest.mark.parametrize("tie", [False, True])
def test_hf_olmo2_in_numpy_over_the_saved_tensors_gives_our_logits(tmp_path, tie):
  spec = ModelSpec(SHAPE, VOCAB, tie_embeddings=tie, rope_theta=10_000.0, norm_eps=1e-5)
  path, model, params = _saved(tmp_path, spec)
  tensors, config = load_file(path / hf.WEIGHTS), json.loads((path / hf.CONFIG).read_text())
  ours = np.asarray(_logits(model.spec, params, TOKENS))
  assert np.abs(ours).max() > 1.0  # logits large enough for the tolerance to mean something
  for row in range(TOKENS.shape[0]):
    np.testing.assert_allclose(_hf_olmo2_logits(tensors, config, TOKENS[row]), ours[row],
                               rtol=1e-5, atol=1e-5)
  # The check tells apart the names a mapping could confuse.
  for a, b in [("gate_proj", "up_proj"), ("post_attention", "post_feedforward"),
               ("q_proj", "k_proj"), ("q_norm", "k_norm"), ("layers.0.", "layers.1.")]:
    wrong = _hf_olmo2_logits(_swapped(tensors, a, b), config, TOKENS[0])
    assert np.abs(wrong - ours[0]).max() > 1e-2, (a, b)


def test_a_sharded_checkpoint_loads_the_same_params(tmp_path):
  path, _, params = _saved(tmp_path)
  tensors = load_file(path / hf.WEIGHTS)
  (path / hf.WEIGHTS).unlink()
  names = sorted(tensors)
  shards = {"model-00001-of-00002.safetensors": names[::2],
            "model-00002-of-00002.safetensors": names[1::2]}
  for file, part in shards.items():
    save_file({k: tensors[k] for k in part}, path / file, metadata={"format": "pt"})
  weight_map = {k: file for file, part in shards.items() for k in part}
  (path / hf.INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
  _, loaded = hf.load(path)
  chex.assert_trees_all_equal(loaded, jax.tree.map(np.asarray, params))
  first = "model-00001-of-00002.safetensors"
  save_file({k: tensors[k] for k in names[:3]}, path / first)  # names[1] is in shard 2 too
  with pytest.raises(ConfigError, match=f"tensor {names[1]} = 'in two shards'"):
    hf.load(path)
  (path / first).unlink()
  with pytest.raises(ConfigError, match=f"weight_map file = '{first}'"):
    hf.load(path)


DROP = object()  # a config.json field to leave out


def _edit_config(path, **changes):
  config = json.loads((path / hf.CONFIG).read_text())
  config.update(changes)
  config = {k: v for k, v in config.items() if v is not DROP}
  (path / hf.CONFIG).write_text(json.dumps(config))


@pytest.mark.parametrize("changes", [
    {"rope_theta": DROP, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
    {"rope_parameters": DROP, "rope_theta": 10000.0, "rope_scaling": None},
])
def test_both_rope_layouts_load(tmp_path, changes):
  path, _, _ = _saved(tmp_path)
  _edit_config(path, **changes)
  assert hf.load(path)[0].spec.rope_theta == 10000.0


def test_hfs_defaults_fill_the_fields_a_config_leaves_out(tmp_path):
  path, _, _ = _saved(tmp_path)
  _edit_config(path, rope_theta=DROP, rope_parameters=DROP, rms_norm_eps=DROP,
               num_key_value_heads=DROP, tie_word_embeddings=DROP, architectures=DROP)
  spec = hf.load(path)[0].spec
  assert (spec.rope_theta, spec.norm_eps, spec.tie_embeddings) == (10000.0, 1e-5, False)


@pytest.mark.parametrize("changes, match", [
    ({"num_key_value_heads": 1}, "num_key_value_heads = 1: allowed: num_attention_heads 2"),
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling = "),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}},
     "rope_parameters.rope_type = 'yarn'"),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": 1e4}},
     "rope_parameters.rope_theta = 10000.0: allowed: the top-level rope_theta 500000.0"),
    ({"attention_bias": True}, "attention_bias = True"),
    ({"hidden_act": "gelu"}, "hidden_act = 'gelu': allowed: 'silu'"),
    ({"model_type": "olmo"}, "model_type = 'olmo'"),
    ({"architectures": ["OlmoForCausalLM"]}, "architectures = \\['OlmoForCausalLM'\\]"),
    ({"num_attention_heads": 3}, "hidden_size = 16: allowed: a multiple of num_attention_heads"),
    ({"num_attention_heads": 16}, "hidden_size = 16: .* even head_dim"),
    ({"head_dim": 4}, "head_dim = 4"),
    ({"vocab_size": 0}, "vocab_size = 0: allowed: an integer > 0"),
    ({"hidden_size": DROP}, "hidden_size = None"),
    ({"tie_word_embeddings": "yes"}, "tie_word_embeddings = 'yes'"),
])
def test_a_config_this_decoder_cannot_represent_is_refused(tmp_path, changes, match):
  path, _, _ = _saved(tmp_path)
  _edit_config(path, **changes)
  with pytest.raises(ConfigError, match=match):
    hf.load(path)


def _edit_tensors(path, edit):
  tensors = dict(load_file(path / hf.WEIGHTS))
  edit(tensors)
  save_file(tensors, path / hf.WEIGHTS)


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.pop("model.layers.1.mlp.up_proj.weight"),
     "tensor model.layers.1.mlp.up_proj.weight = 'missing'"),
    (lambda t: t.update({"model.layers.0.self_attn.q_proj.weight": np.zeros((16, 8), "f4")}),
     r"tensor model.layers.0.self_attn.q_proj.weight shape = \(16, 8\): allowed: \(16, 16\)"),
    (lambda t: t.update({"model.layers.2.mlp.up_proj.weight": np.zeros((64, 16), "f4")}),
     "tensors = \\['model.layers.2.mlp.up_proj.weight'\\]"),
    (lambda t: t.update({"model.norm.weight": np.zeros(16, np.int32)}),
     "tensor model.norm.weight dtype = 'int32'"),
])
def test_missing_unexpected_or_misshapen_tensors_are_refused_by_name(tmp_path, edit, match):
  path, _, _ = _saved(tmp_path)
  _edit_tensors(path, edit)
  with pytest.raises(ConfigError, match=match):
    hf.load(path)


def test_a_tied_checkpoint_may_carry_its_head_only_equal_to_the_embedding(tmp_path):
  path, model, params = _saved(tmp_path, ModelSpec(SHAPE, VOCAB, tie_embeddings=True))
  _edit_tensors(path, lambda t: t.update({"lm_head.weight": t["model.embed_tokens.weight"]}))
  loaded, loaded_params = hf.load(path)
  np.testing.assert_array_equal(_logits(loaded.spec, loaded_params, TOKENS),
                                _logits(model.spec, params, TOKENS))
  _edit_tensors(path, lambda t: t.update({"lm_head.weight": t["model.embed_tokens.weight"] + 1}))
  with pytest.raises(ConfigError, match="tensor lm_head.weight = 'differs from"):
    hf.load(path)


def test_a_missing_or_unreadable_checkpoint_is_refused(tmp_path):
  with pytest.raises(ConfigError, match="no such checkpoint directory"):
    hf.load(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ConfigError, match="no config.json"):
    hf.load(tmp_path / "empty")
  path, _, _ = _saved(tmp_path)
  (path / hf.WEIGHTS).unlink()
  with pytest.raises(ConfigError, match="no model.safetensors or model.safetensors.index.json"):
    hf.load(path)
  (path / hf.WEIGHTS).write_bytes(b"not a safetensors file")
  with pytest.raises(ConfigError, match="not a readable safetensors file"):
    hf.load(path)
  (path / hf.CONFIG).write_text("{not json")
  with pytest.raises(ConfigError, match="config.json: not readable as JSON"):
    hf.load(path)


def test_an_olmo1_model_is_refused_on_save(tmp_path):
  spec = ModelSpec(SHAPE, VOCAB, block="olmo1")
  with pytest.raises(ConfigError, match="model.block = 'olmo1': allowed: 'olmo2'.*LayerNorm"):
    hf.save(tmp_path / "x", Model(spec), {})  # refused on the spec, before the params
  assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("run, match", [
    (dict(vocab_size=512), "vocab_size 128: this run's vocabulary is 512"),
    (dict(shape=Shape(16, 3, 2, 64)), "num_layers 2: this run's num_layers is 3"),
    (dict(shape=Shape(16, 2, 4, 64)), "num_heads 2: this run's num_heads is 4"),
    (dict(shape=Shape(16, 2, 2, 32)), "mlp_hidden 64: this run's mlp_hidden is 32"),
    (dict(tie_embeddings=True), "untied embeddings where the run is tied"),
    (dict(rope_theta=10_000.0), "rope_theta 500000.0: this run's rope_theta is 10000.0"),
    (dict(norm_eps=1e-5), "norm_eps 1e-06: this run's norm_eps is 1e-05"),
    (dict(block="olmo1"), "this run's block is 'olmo1': allowed: 'olmo2'"),
])
def test_a_run_incompatible_with_its_checkpoint_is_refused(run, match):
  checkpoint = ModelSpec(SHAPE, VOCAB)
  with pytest.raises(ConfigError, match="config.model.init_from = '/ckpt': " + match):
    hf.check_compatible(checkpoint, dataclasses.replace(checkpoint, **run), "/ckpt")


def test_a_compatible_run_passes_whatever_its_compute_settings():
  checkpoint = ModelSpec(SHAPE, VOCAB, tie_embeddings=True)
  run = dataclasses.replace(checkpoint, dtype="bfloat16", remat=True, attention="xla")
  assert hf.check_compatible(checkpoint, run, "/ckpt") is None
  with pytest.raises(ConfigError, match="tied embeddings where the run is untied"):
    hf.check_compatible(checkpoint, ModelSpec(SHAPE, VOCAB), "/ckpt")
