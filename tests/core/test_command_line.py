"""Tests of rare_tasks/core/command_line.py: every flag or config mistake is one ConfigError line
naming the flag, the value and what is allowed; a good command line parses as absl would."""

import textwrap

import pytest
from absl import flags
from ml_collections import config_flags

from rare_tasks.core import command_line
from rare_tasks.core.aliases import Aliases
from rare_tasks.core.config import ConfigError

CONFIG = textwrap.dedent('''
    import ml_collections
    from rare_tasks.core.config import study_preset

    def get_config(preset="default"):
      preset = study_preset("study", preset, ("default", "smoke"))
      c = ml_collections.ConfigDict()
      c.seed = 0
      c.train = ml_collections.ConfigDict(dict(steps=10, learning_rate=0.1))
      c.grid = ml_collections.ConfigDict(dict(width=(4, 8)))
      if preset == "smoke":
        c.train.steps = 2
      return c
''')


@pytest.fixture
def config_file(tmp_path):
  path = tmp_path / "configs" / "study.py"
  path.parent.mkdir()
  path.write_text(CONFIG)
  return path


def _parse(*args, default=None, aliases=None):
  """Parses `args` after the program name into fresh flags; returns (flag values, rest)."""
  argv = ["prog", *map(str, args)]
  fv = flags.FlagValues()
  holder = config_flags.DEFINE_config_file("config", None, flag_values=fv, sys_argv=argv)
  flags.DEFINE_string("workdir", "wd", "", flag_values=fv)
  rest = command_line.parse_flags(argv, flag_values=fv, default=default, aliases=aliases)
  return holder, rest


def _refused(*args, aliases=None) -> str:
  with pytest.raises(ConfigError) as err:
    _parse(*args, aliases=aliases)
  message = str(err.value)
  assert "\n" not in message
  return message


def test_a_good_command_line_parses_with_its_overrides(config_file):
  holder, rest = _parse(f"--config={config_file}:smoke", "--config.train.steps=7",
                        "--config.grid.width=(2,)", "--workdir=x", "extra")
  assert holder.value.train.steps == 7 and tuple(holder.value.grid.width) == (2,)
  assert rest == ["prog", "extra"]


@pytest.mark.parametrize("override, field, suggestion", [
    ("--config.sede=1", "config.sede", "config.seed"),
    ("--config.train.stpes=3", "config.train.stpes", "config.train.steps"),
    ("--config.grid.widht=(8,)", "config.grid.widht", "config.grid.width"),
    ("--config.trian.steps=3", "config.trian.steps", "config.train.steps"),
    ("--noconfig.train.stpes", "config.train.stpes", "config.train.steps"),
])
def test_a_misspelt_field_at_any_depth_is_named_with_a_suggestion(config_file, override, field,
                                                                  suggestion):
  message = _refused(f"--config={config_file}", override)
  assert f"{field} is not a known field" in message and suggestion in message
  assert message.startswith(override.replace("--noconfig", "--config").split("=")[0])


def test_a_value_of_the_wrong_type_names_the_field_and_the_value(config_file):
  message = _refused(f"--config={config_file}", "--config.train.steps=abc")
  assert message.startswith("--config.train.steps=abc: config.train.steps = 'abc': allowed:")
  assert "allowed: an int (invalid literal" in message


def test_a_missing_config_file_lists_the_ones_there(config_file):
  message = _refused(f"--config={config_file.parent / 'stduy.py'}")
  assert "stduy.py: no such config file" in message and str(config_file) in message
  assert "no such config file" in _refused("--config=nowhere/x.py")
  message = _refused(f"--config={config_file.parent}")
  assert "a folder, not a config file; config files in" in message and str(config_file) in message


def test_a_missing_preset_names_the_allowed_ones(config_file):
  message = _refused(f"--config={config_file}:smok")
  assert "unknown preset; allowed: ('default', 'smoke')" in message


def test_a_config_file_that_fails_is_one_line(config_file):
  config_file.write_text("def get_config(preset=None):\n  return 1 / 0\n")
  assert "ZeroDivisionError: division by zero" in _refused(f"--config={config_file}")
  config_file.write_text("x = 1\n")
  assert "defines no get_config()" in _refused(f"--config={config_file}")


def test_an_unknown_flag_is_one_line(config_file):
  assert "workdri" in _refused(f"--config={config_file}", "--workdri=x")


def test_the_default_config_file_takes_overrides_and_refuses_misspelt_ones(config_file):
  holder, _ = _parse("--config.train.steps=4", default=f"{config_file}:smoke")
  assert holder.value.train.steps == 4
  holder, _ = _parse(f"--config={config_file}", default="elsewhere.py")
  assert holder.value.train.steps == 10  # given on the command line: the default is not used
  with pytest.raises(ConfigError, match=r"config.train.stpes is not a known field"):
    _parse("--config.train.stpes=4", default=str(config_file))


RENAMED = Aliases(fields={"train.rate": "train.learning_rate", "widths": "grid.width",
                          "optimizer": "train"})


@pytest.mark.parametrize("override, old, new", [
    ("--config.train.rate=0.5", "config.train.rate", "config.train.learning_rate"),
    ("--config.widths=(2,)", "config.widths", "config.grid.width"),
    ("--config.optimizer.steps=3", "config.optimizer.steps", "config.train.steps"),
])
def test_a_renamed_field_is_refused_with_its_new_name(config_file, override, old, new):
  seen = []

  def aliases_of(config):
    seen.append(config.train.steps)
    return RENAMED

  message = _refused(f"--config={config_file}:smoke", override, aliases=aliases_of)
  assert message == f"{override}: {old} was renamed {new}"
  assert seen == [2]  # the map was asked for with the loaded config


def test_a_field_the_map_does_not_rename_gets_the_usual_refusal(config_file):
  message = _refused(f"--config={config_file}", "--config.train.stpes=3",
                     aliases=lambda config: RENAMED)
  assert "config.train.stpes is not a known field; did you mean config.train.steps" in message
  holder, _ = _parse(f"--config={config_file}", "--config.train.learning_rate=0.5",
                     aliases=lambda config: RENAMED)
  assert holder.value.train.learning_rate == 0.5  # today's name is no refusal
