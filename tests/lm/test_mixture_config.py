"""Tests of rare_tasks/lm/mixture_config.py: the fields, each refusal naming its field, and the
injection-study config of a round."""

import importlib.util
import pathlib

import pytest

from rare_tasks.core.config import ConfigError
from rare_tasks.lm import grid_config, mixture_config


def config():
  c = mixture_config.base_config()
  c.grid.size = ("cpu_d16_l2", "cpu_d32")
  c.injection.unit = "per_sequence"
  c.task.num_symbols = 8
  c.data.seq_len = 16
  c.train.batch_size = 8
  return c


def test_the_fields_are_the_injection_studys_without_frequency_and_mechanism_plus_design():
  c = mixture_config.base_config()
  assert c.study == "lm_mixture_design"
  assert "frequency" not in c.grid and "mechanism" not in c
  assert set(c.grid) == set(grid_config.base_config().grid) - {"frequency"}
  assert set(c.design) == {"min_frequency", "max_frequency", "initial_frequency",
                           "num_candidates", "bracket_factor", "max_expansions", "refine_rounds",
                           "target_frequencies", "centers_from"}
  resolved, sizes = mixture_config.resolve(config(), "cpu")
  assert set(sizes) == {"cpu_d16_l2", "cpu_d32"} and sizes["cpu_d32"].model.d_model == 32


@pytest.mark.parametrize("field, value, message", [
    ("design.min_frequency", 0.9, "config.design.min_frequency = 0.9: allowed: a frequency "
                                  "below design.max_frequency = 0.8"),
    ("design.max_frequency", 1.5, "config.design.max_frequency = 1.5"),
    ("design.num_candidates", 1, "config.design.num_candidates = 1"),
    ("design.bracket_factor", 1.0, "config.design.bracket_factor = 1.0: allowed: a number > 1"),
    ("design.target_frequencies", (0.1, 2.0), "config.design.target_frequencies"),
    ("design.centers_from", "/no/such/dir", "config.design.centers_from = '/no/such/dir'"),
    ("task.jointly", True, "config.task.jointly = True: allowed: False for lm_mixture_design"),
    ("grid.gap", (1, 2), "config.grid.gap = (1, 2): allowed: one gap"),
    ("grid.size", ("cpu_d16_l2", "no_such"), "config.grid.size"),
])
def test_bad_fields_are_refused_by_name(field, value, message):
  c = config()
  section, name = field.split(".")
  c[section][name] = value
  with pytest.raises(ConfigError) as e:
    mixture_config.resolve(c, "cpu")
  assert str(e.value).startswith(message)


def test_a_max_frequency_that_does_not_fit_the_rows_names_the_design_field():
  c = config()
  c.injection.unit = "per_token"  # 0.8 per token is 13 instances per 16-token row
  with pytest.raises(ConfigError, match=r"config.design.max_frequency = 0.8: allowed: at most "
                                        r"0.0625 per_token"):
    mixture_config.resolve(c, "cpu")


def test_the_injection_study_fields_are_refused_here_too():
  c = config()
  c.grid.frequency = (0.1,)
  with pytest.raises(ConfigError, match="grid.frequency"):
    mixture_config.resolve(c, "cpu")


def test_round_config_is_an_injection_study_of_the_rounds_candidates():
  c = config()
  c.train.steps = 123
  r = mixture_config.round_config(c, (0.05, 0.2))
  assert r.study == "lm_size_by_frequency" and tuple(r.grid.frequency) == (0.05, 0.2)
  assert r.train.steps == 123 and tuple(r.grid.size) == ("cpu_d16_l2", "cpu_d32")
  assert not r.mechanism.gradients and "design" not in r
  grid_config.resolve(r, "cpu")  # a valid injection study


def test_every_preset_of_the_study_file_resolves():
  path = pathlib.Path(__file__).resolve().parents[2] / "configs" / "lm_mixture_design.py"
  spec = importlib.util.spec_from_file_location("_study_lm_mixture_design", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for preset in module.PRESETS:
    for platform in ("cpu", "gpu"):
      c, sizes = mixture_config.resolve(module.get_config(preset), platform)
      assert c.study == "lm_mixture_design" and set(sizes) == set(c.grid.size)
  lengths = module.get_config("training_length").grid.steps
  assert max(lengths) >= 4 * min(lengths)
  assert tuple(module.get_config("gpu").grid.size) == ("4M", "20M")
  with pytest.raises(ConfigError, match="configs/lm_mixture_design.py:nope: unknown preset"):
    module.get_config("nope")
