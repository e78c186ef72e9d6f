"""The injection study's config: per-size resolution from the ladder, the fields it drops from
pretraining, and the refusals that need the whole config."""

import importlib.util
import math
import pathlib

import pytest

from rare_tasks.core.config import ConfigError
from rare_tasks.lm import config as lm_config
from rare_tasks.lm import grid_config, ladder


def test_each_size_resolves_to_its_ladder_values_unless_set():
  c = grid_config.base_config()
  c.grid.size = ("cpu_d16", "cpu_d64")
  _, sizes = grid_config.resolve(c, "cpu")
  for name, sc in sizes.items():
    preset = ladder.PRESETS[name]
    assert sc.model.d_model == preset.shape.d_model
    assert sc.train.learning_rate == pytest.approx(
        ladder.default_learning_rate(preset.nominal_size()))
    assert sc.init_seeds == (0,) and sc.model.dtype == "float32"
  c.train.batch_size, c.train.learning_rate = 48, 1e-3
  _, sizes = grid_config.resolve(c, "gpu")
  assert {(s.train.batch_size, s.train.learning_rate, s.model.dtype)
          for s in sizes.values()} == {(48, 1e-3, "bfloat16")}


def test_the_grid_replaces_preset_and_init_seeds():
  c = grid_config.base_config()
  assert "init_seeds" not in c and "preset" not in c.model and "d_model" not in c.model
  c.init_seeds = (0,)
  with pytest.raises(ConfigError, match="config.init_seeds is not a known field"):
    grid_config.resolve(c, "cpu")


def test_every_shared_field_reaches_each_size_and_a_new_model_field_too(monkeypatch):
  c = grid_config.base_config()
  c.model.remat, c.data.seq_len, c.train.z_loss, c.mesh.members = True, 32, 0.0, 1
  c.eval_every, c.checkpoint_interval_s = 50, 5.0
  p = grid_config.size_config(c, "cpu_d32")
  assert (p.model.remat, p.data.seq_len, p.train.z_loss, p.mesh.members) == (True, 32, 0.0, 1)
  assert (p.eval_every, p.checkpoint_interval_s) == (50, 5.0)
  real = lm_config.model_schema

  def with_a_new_field(preset=True):
    m = real(preset)
    m.new_field = 7
    return m

  monkeypatch.setattr(lm_config, "model_schema", with_a_new_field)
  c = grid_config.base_config()
  c.model.new_field = 11
  assert grid_config.size_config(c, "cpu_d32").model.new_field == 11


def test_the_learned_threshold_is_checked_and_its_old_name_refused_with_the_new_one():
  c = grid_config.base_config()
  assert (c.learned.criterion, c.learned.threshold) == ("accuracy", 0.9)
  c.learned.threshold = 1.5
  with pytest.raises(ConfigError, match=r"config.learned.threshold = 1.5: allowed: a number in "):
    grid_config.resolve(c, "cpu")
  c = grid_config.base_config()
  c.learned.criterion = "loss"
  with pytest.raises(ConfigError, match=r"config.learned.criterion = 'loss': allowed: one of "
                                        r"\['accuracy', 'choice_accuracy'\]"):
    grid_config.resolve(c, "cpu")
  c = grid_config.base_config()
  c.learned_accuracy = 0.8
  with pytest.raises(ConfigError, match=r"^config.learned_accuracy was renamed "
                                        r"config.learned.threshold$"):
    grid_config.resolve(c, "cpu")


def test_a_stored_config_with_the_old_learned_accuracy_reads_in_todays_names():
  old = grid_config.base_config().to_dict()
  del old["learned"]
  old["learned_accuracy"] = 0.8
  new = grid_config.ALIASES.translate(old)
  assert "learned_accuracy" not in new and new["learned"] == {"threshold": 0.8}


def test_steady_injection_takes_no_gap_sweep():
  c = grid_config.base_config()
  c.grid.gap = (1, 2)
  with pytest.raises(ConfigError, match=r"config.grid.gap = \(1, 2\): allowed: \(1,\) with "
                                        r"injection.schedule = 'steady'"):
    grid_config.resolve(c, "cpu")
  c.injection.schedule = "bursts"
  grid_config.resolve(c, "cpu")


@pytest.mark.parametrize("field,value", [("grid.seed", (0, 0)), ("grid.frequency", ()),
                                         ("grid.task", ("addition", "addition")),
                                         ("grid.gap", (2.5,))])
def test_axes_must_be_non_empty_tuples_of_distinct_allowed_values(field, value):
  c = grid_config.base_config()
  section, name = field.split(".")
  c[section][name] = value
  with pytest.raises(ConfigError, match=rf"config.{field} = .*: allowed: a non-empty tuple of "
                                        "distinct"):
    grid_config.resolve(c, "cpu")


def test_withholding_every_step_is_refused():
  c = grid_config.base_config()
  c.injection.withhold_steps = c.train.steps
  with pytest.raises(ConfigError, match="config.injection.withhold_steps = 1000: allowed: an "
                                        "integer below the shortest run length, 1000 steps"):
    grid_config.resolve(c, "cpu")
  c.grid.steps = (2000, 500)  # the shortest of grid.steps, not train.steps
  c.injection.withhold_steps = 500
  with pytest.raises(ConfigError, match="config.injection.withhold_steps = 500: allowed: an "
                                        "integer below the shortest run length, 500 steps"):
    grid_config.resolve(c, "cpu")


@pytest.mark.parametrize("field,value,allowed", [
    ("grid.steps", (100, 100), "an empty tuple"), ("grid.steps", (0,), "an empty tuple"),
    ("task.split", "mirror", r"one of \['ordered', 'unordered'\]"),
    ("learned.last_evals", 0, "an integer >= 1")])
def test_the_new_fields_are_checked(field, value, allowed):
  c = grid_config.base_config()
  section, name = field.split(".")
  c[section][name] = value
  with pytest.raises(ConfigError, match=rf"config.{field} = .*: allowed: {allowed}"):
    grid_config.resolve(c, "cpu")


def test_a_length_whose_schedule_does_not_fit_is_refused():
  c = grid_config.base_config()
  c.grid.steps = (100, 1000)  # no decay after the 100 warmup steps
  with pytest.raises(ConfigError, match=r"config.grid.steps = \(100, 1000\): allowed: run lengths "
                                        "above train.warmup_steps = 100"):
    grid_config.resolve(c, "cpu")
  c.train.warmup_steps = 10
  c.grid.steps = (50, 1000)  # evaluations every 100 steps do not fit a 50-step run
  with pytest.raises(ConfigError, match=r"config.grid.steps = \(50, 1000\): allowed: run lengths "
                                        "each of which the training fields fit; at 50 steps: "
                                        "config.eval_every = 100"):
    grid_config.resolve(c, "cpu")


def _config_file(study):
  path = pathlib.Path(__file__).resolve().parents[2] / "configs" / f"{study}.py"
  spec = importlib.util.spec_from_file_location(f"_study_{study}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("study", ["lm_size_by_frequency", "lm_gpu", "lm_paper"])
def test_every_preset_of_the_injection_study_files_resolves(study):
  module = _config_file(study)
  for preset in module.PRESETS:
    for platform in ("cpu", "gpu"):
      c, sizes = grid_config.resolve(module.get_config(preset), platform)
      assert c.study == "lm_size_by_frequency" and set(sizes) == set(c.grid.size)
  with pytest.raises(ConfigError, match=f"configs/{study}.py:nope: unknown preset"):
    module.get_config("nope")


def test_the_renamed_config_path_says_so_and_gives_the_new_config(capsys):
  old, new = _config_file("lm_width_by_frequency"), _config_file("lm_size_by_frequency")
  for preset in new.PRESETS:
    assert old.get_config(preset).to_dict() == new.get_config(preset).to_dict()
    assert "was renamed configs/lm_size_by_frequency.py" in capsys.readouterr().err
  with pytest.raises(ConfigError, match="configs/lm_size_by_frequency.py:nope: unknown preset"):
    old.get_config("nope")


def test_the_paper_config_caps_its_frequencies_at_one_instance_per_row():
  path = pathlib.Path(__file__).resolve().parents[2] / "configs" / "lm_paper.py"
  spec = importlib.util.spec_from_file_location("_study_lm_paper", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  assert max(c.grid.frequency) * c.data.seq_len * c.train.batch_size <= c.train.batch_size
  assert min(c.grid.frequency) * c.data.seq_len * c.train.batch_size == pytest.approx(0.1)
  c.grid.frequency = (7.8e-3,)  # the paper's top, 33K instances per batch of 2,048 rows
  with pytest.raises(ConfigError, match=r"config.grid.frequency = 0.0078: allowed: frequencies "
                                        r"per_token of at most 0.000488281"):
    grid_config.resolve(c, "gpu")


def test_the_cpu_default_holds_depth_and_learning_rate_and_reaches_the_rare_regime():
  module = _config_file("lm_size_by_frequency")
  c, sizes = grid_config.resolve(module.get_config("default"), "cpu")
  assert len({s.model.num_layers for s in sizes.values()}) == 1
  assert len({s.train.learning_rate for s in sizes.values()}) == 1
  assert len(c.grid.seed) >= 3
  freqs = sorted(c.grid.frequency)
  assert math.log10(freqs[-1] / freqs[0]) >= 1.5
  assert freqs[0] * c.train.batch_size < 1  # below one instance per batch
  d, _ = grid_config.resolve(module.get_config("data_scaling"), "cpu")
  ranked = sorted(c.grid.size, key=lambda s: sizes[s].model.d_model)
  assert tuple(d.grid.size) == (ranked[0], ranked[-1])
  assert max(d.grid.steps) >= 4 * min(d.grid.steps) and c.train.steps in d.grid.steps
  depth, depth_sizes = grid_config.resolve(module.get_config("depth"), "cpu")
  assert {depth_sizes[s].model.num_layers for s in depth.grid.size} == {1, 2}


@pytest.mark.parametrize("field,value,allowed", [
    ("mechanism.top_k", (0.0,), "a non-empty tuple of distinct fractions in \\(0, 1\\]"),
    ("mechanism.top_k", (0.1, 0.1), "a non-empty tuple of distinct fractions"),
    ("mechanism.retention_instances", 0, "an integer > 0"),
    ("mechanism.fourier_factor", 0.0, "a finite number > 0"),
    ("mechanism.effectivity_window", -1, "an integer >= 0")])
def test_the_mechanism_fields_are_checked(field, value, allowed):
  c = grid_config.base_config()
  section, name = field.split(".")
  c[section][name] = value
  with pytest.raises(ConfigError, match=rf"config.{field} = .*: allowed: {allowed}"):
    grid_config.resolve(c, "cpu")


def test_retention_needs_bursts_after_a_withholding_phase_that_fits():
  c = grid_config.base_config()
  c.mechanism.retention = True
  with pytest.raises(ConfigError, match="config.mechanism.retention = True: allowed: False "
                                        "unless injection.schedule = 'bursts'"):
    grid_config.resolve(c, "cpu")
  c.injection.schedule, c.grid.gap = "bursts", (1, 10)
  c.grid.frequency = (0.0001,)
  with pytest.raises(ConfigError, match="config.injection.withhold_steps = 0: allowed: at least "
                                        r"the largest grid.gap \(10\)"):
    grid_config.resolve(c, "cpu")
  c.injection.withhold_steps = 995
  with pytest.raises(ConfigError, match="config.injection.withhold_steps = 995: allowed: at most "
                                        r"the shortest run \(1000 steps\) minus the largest gap"):
    grid_config.resolve(c, "cpu")
  c.injection.withhold_steps = 100
  assert grid_config.resolve(c, "cpu")[0].mechanism.retention
