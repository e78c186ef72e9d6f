"""Tests of rare_tasks/synthetic/config.py and the presets of configs/width_by_frequency.py."""

import importlib.util
import pathlib
import re

import ml_collections
import pytest

from rare_tasks.core import workdir
from rare_tasks.synthetic import config as schema
from rare_tasks.synthetic.config import ConfigError, base_config, validate

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"


def _load_study(name):
  spec = importlib.util.spec_from_file_location(f"_study_{name}", CONFIGS / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _fails(config, *fragments):
  """Asserts validate(config) raises ConfigError whose message contains every fragment."""
  with pytest.raises(ConfigError) as err:
    validate(config)
  msg = str(err.value)
  for fragment in fragments:
    assert fragment in msg, f"{fragment!r} not in {msg!r}"
  return msg


def test_base_config_validates():
  c = base_config()
  validate(c)
  assert isinstance(c, ml_collections.ConfigDict)
  assert issubclass(ConfigError, ValueError)


def test_unknown_task_name():
  c = base_config()
  c.task.name = "parity"
  _fails(c, "config.task.name", "'parity'", "linear_mixture")


def test_unknown_model_name():
  c = base_config()
  c.model.name = "transformer"
  _fails(c, "config.model.name", "'transformer'", "encoder_heads")


def test_unknown_activation_and_optimizer():
  c = base_config()
  c.model.activation = "tanh"
  _fails(c, "config.model.activation", "'tanh'", "relu", "gelu", "identity")
  c = base_config()
  c.train.optimizer = "lion"
  _fails(c, "config.train.optimizer", "'lion'", "adam", "sgd")


def test_unknown_generator():
  c = base_config()
  assert c.train.rng == "philox4x32"  # new runs' default
  c.train.rng = "rbg"
  _fails(c, "config.train.rng", "'rbg'", "philox4x32", "threefry2x32")


@pytest.mark.parametrize("width", [0, -4])
def test_model_width_must_be_positive(width):
  c = base_config()
  c.model.width = width
  _fails(c, "config.model.width", f"= {width}", "integer > 0")


def test_grid_width_value_must_be_positive():
  c = base_config()
  c.grid.width = (8, 16, 0)
  _fails(c, "config.grid.width[2]", "= 0", "integer > 0")
  c.grid.width = (-1, 16)
  _fails(c, "config.grid.width[0]", "= -1")


def test_grid_width_must_be_integer():
  c = base_config()
  c.grid.width = (8, 16.5)
  _fails(c, "config.grid.width[1]", "16.5", "integer")


@pytest.mark.parametrize("freq", [0.0, 1.0, 1.5, -0.1])
def test_frequency_must_be_in_open_unit_interval(freq):
  c = base_config()
  c.injection.frequency = freq
  _fails(c, "config.injection.frequency", repr(freq), "(0, 1)")


@pytest.mark.parametrize("freq", [0.0, 1.0, 1.5])
def test_grid_frequency_must_be_in_open_unit_interval(freq):
  c = base_config()
  c.grid.frequency = (0.01, freq)
  _fails(c, "config.grid.frequency[1]", repr(freq), "(0, 1)")


def test_frequency_leaving_no_valid_mixture_in_task():
  c = base_config()
  del c.grid["frequency"]
  c.task.num_rare = 2
  c.injection.frequency = 0.6
  _fails(c, "config.injection.frequency", "0.6", "below 1 / task.num_rare = 0.5")


def test_frequency_leaving_no_valid_mixture_in_grid():
  c = base_config()
  c.task.num_rare = 2
  c.grid.frequency = (0.01, 0.6)
  _fails(c, "config.grid.frequency", "0.6", "0.5")
  c.grid.frequency = (0.01, 0.4)
  validate(c)


def test_num_rare_must_leave_a_common_task():
  c = base_config()
  c.task.num_tasks = 3
  c.task.num_rare = 3
  _fails(c, "config.task.num_rare", "= 3", "[1, 2]")


@pytest.mark.parametrize("steps", [0, -10])
def test_steps_must_be_positive(steps):
  c = base_config()
  c.train.steps = steps
  _fails(c, "config.train.steps", f"= {steps}", "integer > 0")


def test_misspelt_field_suggests_the_right_one():
  c = base_config()
  c.train.stpes = 100
  msg = _fails(c, "config.train.stpes", "not a known field", "config.train.steps")
  assert "did you mean" in msg


def test_misspelt_top_level_field():
  c = base_config()
  c.eval_evry = 10
  _fails(c, "config.eval_evry", "config.eval_every")


def test_unknown_grid_axis():
  c = base_config()
  c.grid.widht = (8, 16)
  _fails(c, "config.grid.widht", "not a grid axis", "config.grid.width")


def test_grid_axis_without_values_or_with_repeats():
  c = base_config()
  c.grid.seed = ()
  _fails(c, "config.grid.seed", "non-empty")
  c.grid.seed = (0, 1, 0)
  _fails(c, "config.grid.seed", "repeated")


def test_per_task_beta_of_wrong_length():
  c = base_config()
  with c.ignore_type():
    c.task.beta = [1.0, 2.0]
  _fails(c, "config.task.beta", "[1.0, 2.0]", "task.num_tasks = 16")


def test_per_task_beta_of_right_length_validates():
  c = base_config()
  c.task.num_tasks = 3
  with c.ignore_type():
    c.task.beta = [1.0, 2.0, 0.5]
  validate(c)


def test_grid_beta_of_wrong_length():
  c = base_config()
  c.grid.beta = (1.0, [1.0] * 15)
  _fails(c, "config.grid.beta", "exactly task.num_tasks = 16")
  c.grid.beta = (1.0, [1.0] * 16)
  validate(c)


def test_negative_beta():
  c = base_config()
  c.task.beta = -1.0
  _fails(c, "config.task.beta", "-1.0", ">= 0")


def test_missing_field():
  c = base_config()
  del c.train["steps"]
  _fails(c, "config.train.steps", "missing")


def test_bool_is_not_an_integer():
  c = base_config()
  with c.ignore_type():
    c.seed = True
  _fails(c, "config.seed", "True")


def test_grid_values_normalises_scalars():
  c = base_config()
  c.grid = ml_collections.ConfigDict(dict(seed=3, width=[8, 16]))
  assert schema.grid_values(c)["width"] == (8, 16)
  assert schema.grid_values(c)["seed"] == (3,)
  validate(c)


@pytest.mark.parametrize("preset", ["", "default", "smoke"])
def test_width_by_frequency_presets_validate(preset):
  study = _load_study("width_by_frequency")
  c = study.get_config(preset)
  validate(c)
  assert c.train.steps > 0
  if preset == "smoke":
    assert (c.task.num_tasks, c.task.block_size) == (8, 4)
    assert c.train.steps < study.get_config("").train.steps


def test_width_by_frequency_default_grid():
  c = _load_study("width_by_frequency").get_config("")
  assert tuple(c.grid.width) == (4, 8, 16, 32, 64, 128)
  assert len(c.grid.frequency) == 6
  assert (c.task.num_tasks, c.task.block_size, c.task.num_rare) == (16, 8, 1)


def test_width_by_frequency_unknown_preset():
  study = _load_study("width_by_frequency")
  with pytest.raises(ValueError, match=re.escape("smok")) as err:
    study.get_config("smok")
  assert "smoke" in str(err.value) and "default" in str(err.value)


@pytest.mark.parametrize("field,value,fragments", [
    ("task.spectrum_normalization", "l1", ("'l1'", "top", "trace")),
    ("injection.schedule", "burst", ("'burst'", "'bursts'", "'steady'")),
    ("injection.unit", "per_token", ("'per_token'", "'per_example'")),
    ("learned.criterion", "accuracy", ("'accuracy'", "'loss'")),
    ("learned.threshold", 0.0, ("= 0.0", "number > 0")),
    ("injection.gap", 0, ("= 0", "integer > 0")),
    ("injection.withhold_steps", -1, ("= -1", "integer >= 0")),
    ("measure.allocation", 1, ("= 1", "True or False")),
    ("measure.interference", "yes", ("'yes'", "True or False")),
    ("measure.interference_samples", 0, ("= 0", "integer > 0")),
    ("measure.trace_rare", None, ("None", "True or False")),
    ("log.tensorboard", "yes", ("config.log.tensorboard = 'yes'", "True or False")),
])
def test_new_fields_refuse_bad_values(field, value, fragments):
  c = base_config()
  section, name = field.split(".")
  with c.ignore_type():
    c[section][name] = value
  _fails(c, f"config.{field}", *fragments)


@pytest.mark.parametrize("old, value, new", [
    ("task.rare_frequency", 0.1, "injection.frequency"),
    ("injection.mode", "bursts", "injection.schedule"),
    ("learned_fvu", 0.5, "learned.threshold"),
    ("grid.rare_frequency", (0.1,), "grid.frequency"),
    ("grid.rare_frequency", None, "grid.frequency"),  # unset, as the mixture design's was
])
def test_a_field_set_under_its_old_name_is_refused_with_its_new_one(old, value, new):
  c = base_config()
  *section, name = old.split(".")
  (c[section[0]] if section else c)[name] = value
  assert _fails(c) == f"config.{old} was renamed config.{new}"


def test_the_old_schedule_value_is_refused_with_its_new_spelling():
  c = base_config()
  c.injection.schedule = "mixture"
  assert _fails(c) == "config.injection.schedule = 'mixture' was renamed 'steady'"


def test_an_old_config_json_reads_as_todays_default():
  old = workdir.config_json(base_config())
  old["task"]["rare_frequency"] = old["injection"].pop("frequency")
  old["grid"]["rare_frequency"] = old["grid"].pop("frequency")
  old["injection"]["mode"] = {"steady": "mixture"}[old["injection"].pop("schedule")]
  old["learned_fvu"] = old.pop("learned")["threshold"]
  del old["injection"]["unit"]
  new = schema.ALIASES.translate(old)
  assert new["injection"] == {"schedule": "steady", "frequency": 0.01, "gap": 1,
                              "withhold_steps": 0}
  assert new["learned"] == {"threshold": 0.8} and new["grid"]["frequency"] == [0.01]
  assert "rare_frequency" not in new["task"] and "learned_fvu" not in new


def test_grid_gap_axis_is_refused_under_steady_injection():
  c = base_config()
  c.grid.gap = (1, 2, 4)
  _fails(c, "config.grid.gap", "(1, 2, 4)", "'bursts'", "a single value")
  c.grid.gap = (1,)
  validate(c)


def _bursts(gap=4, frequency=0.01, batch_size=256):
  c = base_config()
  c.injection.schedule = "bursts"
  c.injection.gap = gap
  c.train.batch_size = batch_size
  c.injection.frequency = frequency
  c.grid.frequency = (frequency,)
  return c


def test_valid_bursts_config_passes():
  # 0.01 x 25 x 256 = 64 rare examples every 25th step.
  c = _bursts(gap=25)
  c.injection.withhold_steps = 500
  validate(c)
  c.grid.gap = (25, 50)
  validate(c)


def test_bursts_of_a_non_whole_number_of_examples_are_refused():
  # 0.01 x 3 x 256 = 7.68.
  _fails(_bursts(gap=3), "config.grid.frequency", "0.01", "7.68", "whole number")
  c = _bursts(gap=3)
  del c.grid["frequency"]
  _fails(c, "config.injection.frequency", "0.01", "7.68")
  c = _bursts(gap=25)
  c.grid.gap = (25, 3)
  _fails(c, "config.grid.frequency", "7.68")


def test_bursts_larger_than_the_batch_are_refused():
  # 0.5 x 4 x 256 = 512 rare examples, more than a batch of 256.
  _fails(_bursts(gap=4, frequency=0.5), "config.grid.frequency", "0.5",
         "task.num_rare = 256", "512")
  validate(_bursts(gap=2, frequency=0.5))
  # Each of two rare tasks gets its own burst: 2 x (0.25 x 4 x 256) = 512 > 256.
  c = _bursts(gap=4, frequency=0.25)
  c.task.num_rare = 2
  _fails(c, "config.grid.frequency", "0.25", "task.num_rare = 128", "256")
  c.injection.gap = 2
  validate(c)


@pytest.mark.parametrize("withhold", [2000, 5000])
def test_withhold_steps_must_be_below_train_steps_under_bursts(withhold):
  c = _bursts(gap=25)
  c.injection.withhold_steps = withhold
  _fails(c, "config.injection.withhold_steps", f"= {withhold}", "train.steps = 2000")
  c.injection.withhold_steps = 1999
  validate(c)


def test_trace_rare_needs_identity_activation():
  c = base_config()
  c.measure.trace_rare = True
  validate(c)
  c.model.activation = "relu"
  _fails(c, "config.model.activation", "'relu'", "'identity'", "trace_rare")
  c.model.activation = "identity"
  c.grid.activation = ("identity", "relu")
  _fails(c, "config.grid.activation", "'relu'", "'identity'")


def test_every_grid_axis_is_present_and_unset_axes_are_left_out():
  c = base_config()
  assert set(c.grid) == set(schema.GRID_AXES)
  assert set(schema.grid_values(c)) == {"width", "frequency", "seed"}
  c.grid.learning_rate = (1e-3, 3e-3)
  assert schema.grid_values(c)["learning_rate"] == (1e-3, 3e-3)
  validate(c)


# The synthetic track's study files: every config file whose default is a synthetic study.
SYNTHETIC_CONFIGS = sorted(p.stem for p in CONFIGS.glob("*.py")
                           if _load_study(p.stem).get_config().study in schema.STUDIES)


def test_the_synthetic_study_files_are_found():
  assert {"width_by_frequency", "retention", "mixture_design"} <= set(SYNTHETIC_CONFIGS)
  assert "lm_pretrain" not in SYNTHETIC_CONFIGS


@pytest.mark.parametrize("study", SYNTHETIC_CONFIGS)
def test_every_study_preset_validates(study):
  module = _load_study(study)
  for preset in module.PRESETS:
    validate(module.get_config(preset))
  with pytest.raises(ValueError, match=f"configs/{study}.py:nope: unknown preset"):
    module.get_config("nope")


def test_an_axis_set_to_none_on_the_command_line_is_unset():
  c = base_config()
  c.grid.frequency = (None,)  # what --config.grid.frequency=None gives
  assert "frequency" not in schema.grid_values(c)
  validate(c)


def test_evaluation_batch_must_hold_every_task():
  c = base_config()
  c.eval_samples = 8
  with pytest.raises(ConfigError, match=r"config.eval_samples = 8.*task.num_tasks = 16"):
    validate(c)
