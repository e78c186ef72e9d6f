"""The language-model config: a preset resolved into every shape field, the ladder's learning
rate and batch, the platform's dtype, and each refusal naming its field and value."""

import importlib.util
import pathlib
import re

import pytest

from rare_tasks.core.config import ConfigError
from rare_tasks.lm import config, ladder


def _refused(c, match: str, platform: str = "cpu") -> str:
  with pytest.raises(ConfigError, match=match) as e:
    config.resolve(c, platform)
  return str(e.value)


def test_unset_fields_take_the_presets_values():
  c = config.base_config()
  c.model.preset = "cpu_d64"
  r = config.resolve(c, "cpu")
  preset = ladder.PRESETS["cpu_d64"]
  s = preset.shape
  assert (r.model.d_model, r.model.num_layers, r.model.num_heads, r.model.mlp_hidden) == (
      s.d_model, s.num_layers, s.num_heads, s.mlp_hidden) == (64, 2, 4, 256)
  nominal = preset.nominal_size("olmo2")
  assert r.train.learning_rate == pytest.approx(ladder.default_learning_rate(nominal))
  assert r.train.batch_size == ladder.default_batch_size(nominal)
  assert config.shape_of(r) == s


def test_the_nominal_size_follows_the_block():
  c = config.base_config()
  c.model.preset, c.model.block = "cpu_d128", "olmo1"
  r = config.resolve(c, "cpu")
  nominal = ladder.PRESETS["cpu_d128"].nominal_size("olmo1")
  assert nominal != ladder.PRESETS["cpu_d128"].nominal_size("olmo2")
  assert r.train.learning_rate == pytest.approx(ladder.default_learning_rate(nominal))


def test_an_explicit_field_wins_over_the_preset():
  c = config.base_config()
  c.model.d_model, c.model.num_heads = 48, 4
  c.train.batch_size, c.train.learning_rate = 64, 1e-3
  r = config.resolve(c, "cpu")
  preset = ladder.PRESETS["cpu_d32"].shape
  assert (r.model.d_model, r.model.num_heads) == (48, 4)
  assert (r.model.num_layers, r.model.mlp_hidden) == (preset.num_layers, preset.mlp_hidden)
  assert (r.train.batch_size, r.train.learning_rate) == (64, 1e-3)


def test_the_input_config_is_not_modified():
  c = config.base_config()
  before = c.to_dict()
  r = config.resolve(c, "gpu")
  assert c.to_dict() == before
  assert c.model.d_model is None and c.train.batch_size is None and c.model.dtype == "auto"
  assert r.model.d_model == 32 and r.model.dtype == "bfloat16"
  r.model.d_model = 8  # the result is a copy, not a view
  assert c.model.d_model is None


@pytest.mark.parametrize("platform, dtype", [("cpu", "float32"), ("gpu", "bfloat16"),
                                             ("tpu", "bfloat16")])
def test_auto_dtype_by_platform(platform, dtype):
  assert config.resolve(config.base_config(), platform).model.dtype == dtype


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("platform", ["cpu", "gpu", "tpu"])
def test_an_explicit_dtype_is_kept(dtype, platform):
  c = config.base_config()
  c.model.dtype = dtype
  assert config.resolve(c, platform).model.dtype == dtype


def test_the_default_config_resolves_and_is_checked_clean():
  r = config.resolve(config.base_config(), "cpu")
  config.check_mesh(r, 8, len(r.init_seeds), r.mesh.fsdp)
  config.check_batch(r, 8, 8)
  assert r.train.batch_size % 8 == 0


@pytest.mark.parametrize("field, value", [
    ("model.preset", "7B"),
    ("model.block", "olmo3"),
    ("data.corpus", "wikipedia"),
    ("model.dtype", "float16"),
    ("model.attention", "flash"),
])
def test_an_unknown_choice_is_refused_naming_field_and_value(field, value):
  c = config.base_config()
  section, name = field.split(".")
  c[section][name] = value
  msg = _refused(c, re.escape(f"config.{field} = {value!r}"))
  assert "allowed" in msg


def test_a_misspelt_field_is_refused_with_the_closest_name():
  c = config.base_config()
  c.model.d_modle = 32
  msg = _refused(c, re.escape("config.model.d_modle"))
  assert "not a known field" in msg
  assert "config.model.d_model" in msg


def test_d_model_not_divisible_by_heads_is_refused():
  c = config.base_config()
  c.model.d_model, c.model.num_heads = 30, 4
  msg = _refused(c, re.escape("config.model.num_heads = 4"))
  assert "d_model = 30" in msg


def test_an_odd_head_dim_is_refused():
  c = config.base_config()
  c.model.d_model, c.model.num_heads = 20, 4  # head_dim 5
  msg = _refused(c, re.escape("config.model.num_heads = 4"))
  assert "head_dim" in msg and "5" in msg
  c.model.d_model = 24  # head_dim 6: allowed
  assert config.resolve(c, "cpu").model.d_model == 24


def test_a_preset_heads_count_checks_against_an_explicit_width():
  c = config.base_config()
  c.model.d_model = 18  # the preset's 4 heads do not divide 18
  _refused(c, re.escape("config.model.num_heads = 4"))


def test_seq_len_below_four_is_refused():
  c = config.base_config()
  c.data.seq_len = 3
  _refused(c, re.escape("config.data.seq_len = 3"))
  c.data.seq_len = 4
  assert config.resolve(c, "cpu").data.seq_len == 4


@pytest.mark.parametrize("seeds", [(0, 0), (-1,), (1, 2, 1), ()])
def test_duplicate_negative_or_no_init_seeds_are_refused(seeds):
  c = config.base_config()
  c.init_seeds = seeds
  _refused(c, re.escape(f"config.init_seeds = {seeds!r}"))


def test_distinct_init_seeds_are_allowed():
  c = config.base_config()
  c.init_seeds = (3, 0, 7)
  assert tuple(config.resolve(c, "cpu").init_seeds) == (3, 0, 7)


def test_eval_every_past_the_steps_is_refused():
  c = config.base_config()
  c.train.steps, c.eval_every = 50, 51
  msg = _refused(c, re.escape("config.eval_every = 51"))
  assert "train.steps = 50" in msg
  c.eval_every = 50
  assert config.resolve(c, "cpu").eval_every == 50


@pytest.mark.parametrize("field, value", [
    ("model.d_model", 0), ("train.batch_size", -32), ("train.learning_rate", 0.0),
    ("mesh.fsdp", 0), ("mesh.members", -1),
])
def test_out_of_range_numbers_are_refused(field, value):
  c = config.base_config()
  section, name = field.split(".")
  c[section][name] = value
  _refused(c, re.escape(f"config.{field} = {value!r}"))


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_tensorboard_switch_that_is_no_bool_is_refused(value):
  c = config.base_config()
  assert c.log.tensorboard is False and "log" in config.NOT_IDENTITY
  with c.ignore_type():
    c.log.tensorboard = value
  msg = _refused(c, re.escape(f"config.log.tensorboard = {value!r}"))
  assert "True or False" in msg


def _resolved(**train):
  c = config.base_config()
  for k, v in train.items():
    c.train[k] = v
  return config.resolve(c, "cpu")


def test_check_batch_refuses_a_batch_the_split_does_not_divide():
  c = _resolved(batch_size=36)
  with pytest.raises(ConfigError, match=re.escape("config.train.batch_size = 36")) as e:
    config.check_batch(c, 8, 8)
  assert "a multiple of 8" in str(e.value)
  config.check_batch(c, 4, 8)  # 36 rows split 4 ways: allowed


def test_check_batch_refuses_validation_rows_the_split_does_not_divide():
  c = _resolved(batch_size=32)
  c.data.validation_rows = 100
  with pytest.raises(ConfigError, match=re.escape("config.data.validation_rows = 100")):
    config.check_batch(c, 8, 8)
  config.check_batch(c, 4, 8)


def test_check_mesh_refuses_fsdp_not_dividing_the_devices():
  c = _resolved()
  c.mesh.fsdp = 3
  with pytest.raises(ConfigError, match=re.escape("config.mesh.fsdp = 3")) as e:
    config.check_mesh(c, 8, len(c.init_seeds), c.mesh.fsdp)
  assert "8" in str(e.value)
  c.mesh.fsdp = 4
  config.check_mesh(c, 8, len(c.init_seeds), c.mesh.fsdp)


def test_check_mesh_refuses_members_not_dividing_the_members():
  c = _resolved()
  c.init_seeds = (0, 1, 2)
  c.mesh.members = 2  # divides the 8 devices but not the 3 members
  with pytest.raises(ConfigError, match=re.escape("config.mesh.members = 2")):
    config.check_mesh(c, 8, len(c.init_seeds), c.mesh.fsdp)
  c.init_seeds = (0, 1, 2, 3)
  config.check_mesh(c, 8, len(c.init_seeds), c.mesh.fsdp)


def test_check_mesh_refuses_members_not_dividing_the_devices_fsdp_leaves():
  c = _resolved()
  c.init_seeds = (0, 1, 2, 3)
  c.mesh.members, c.mesh.fsdp = 4, 4  # fsdp leaves 2 devices
  with pytest.raises(ConfigError, match=re.escape("config.mesh.members = 4")):
    config.check_mesh(c, 8, len(c.init_seeds), c.mesh.fsdp)
  c.mesh.members = 2
  config.check_mesh(c, 8, len(c.init_seeds), c.mesh.fsdp)
  c.mesh.members = 0  # automatic: always allowed
  config.check_mesh(c, 8, len(c.init_seeds), c.mesh.fsdp)


def test_every_preset_of_the_pretraining_study_file_resolves():
  path = pathlib.Path(__file__).resolve().parents[2] / "configs" / "lm_pretrain.py"
  spec = importlib.util.spec_from_file_location("_study_lm_pretrain", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for preset in module.PRESETS:
    c = config.resolve(module.get_config(preset), "cpu")
    assert c.study == "lm_pretrain" and c.model.d_model is not None
  with pytest.raises(ConfigError, match="configs/lm_pretrain.py:nope: unknown preset"):
    module.get_config("nope")
