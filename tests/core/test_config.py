"""Tests of rare_tasks/core/config.py: the checks, the field table, typo hints and presets."""

import ml_collections
import pytest

from rare_tasks.core import config as checks
from rare_tasks.core.aliases import Aliases
from rare_tasks.core.config import ConfigError


def _table():
  return {"steps": checks.positive_int, "train.rate": checks.positive_real,
          "train.kind": checks.choice(("adam", "sgd")), "beta": checks.one_or_per_task(
              lambda b: checks.is_real(b) and b >= 0, "a number >= 0")}


def _config(**changes):
  c = ml_collections.ConfigDict(dict(steps=3, beta=1.0, grid={"width": (4,)},
                                     train=dict(rate=0.1, kind="adam")))
  for path, value in changes.items():
    *parents, leaf = path.split("__")
    node = c
    for p in parents:
      node = node[p]
    with c.ignore_type():
      node[leaf] = value
  return c


def test_a_valid_config_comes_back_flat():
  flat = checks.check_fields(_config(), _table(), leaves=("grid",))
  assert flat == {"steps": 3, "beta": 1.0, "grid": {"width": (4,)}, "train.rate": 0.1,
                  "train.kind": "adam"}


@pytest.mark.parametrize("changes, message", [
    ({"steps": 0}, "config.steps = 0: allowed: an integer > 0"),
    ({"steps": True}, "config.steps = True: allowed: an integer > 0"),
    ({"train__rate": float("nan")}, "config.train.rate = nan: allowed: a finite number > 0"),
    ({"train__kind": "lion"}, "config.train.kind = 'lion': allowed: one of ['adam', 'sgd']"),
    ({"beta": (1.0, -2.0)}, "config.beta = (1.0, -2.0): allowed: a number >= 0, or one number "
                            ">= 0 per task"),
    ({"beta": ()}, "config.beta = (): allowed"),
])
def test_a_refused_value_names_the_field_the_value_and_the_rule(changes, message):
  with pytest.raises(ConfigError) as err:
    checks.check_fields(_config(**changes), _table(), leaves=("grid",))
  assert message in str(err.value)
  assert "\n" not in str(err.value)


def test_an_unknown_field_at_any_depth_is_named_with_the_closest_ones():
  c = _config()
  c.train.rtae = 1.0
  with pytest.raises(ConfigError, match=r"config.train.rtae is not a known field; did you mean "
                                        r"config.train.rate"):
    checks.check_fields(c, _table(), leaves=("grid",))
  c = _config()
  c.stpes = 1
  with pytest.raises(ConfigError, match=r"config.stpes .*config.steps"):
    checks.check_fields(c, _table(), leaves=("grid",))


RENAMED = Aliases(fields={"train.lr": "train.rate", "num_steps": "steps"},
                  values={"train.kind": {"adamw": "adam", "sgd": "momentum"}})


def test_a_renamed_field_is_refused_with_its_new_name():
  c = _config()
  c.train.lr = 0.1
  with pytest.raises(ConfigError) as err:
    checks.check_fields(c, _table(), leaves=("grid",), aliases=RENAMED)
  assert str(err.value) == "config.train.lr was renamed config.train.rate"
  c = _config()
  c.num_steps = 3
  with pytest.raises(ConfigError, match=r"^config.num_steps was renamed config.steps$"):
    checks.check_fields(c, _table(), leaves=("grid",), aliases=RENAMED)
  c.train.rtae = 1.0  # not renamed: the closest names, as without a map
  del c["num_steps"]
  with pytest.raises(ConfigError, match=r"config.train.rtae is not a known field; did you"):
    checks.check_fields(c, _table(), leaves=("grid",), aliases=RENAMED)


def test_a_refused_value_that_was_renamed_is_named_with_its_new_spelling():
  with pytest.raises(ConfigError) as err:
    checks.check_fields(_config(train__kind="adamw"), _table(), leaves=("grid",),
                        aliases=RENAMED)
  assert str(err.value) == "config.train.kind = 'adamw' was renamed 'adam'"
  # An old spelling that is still allowed today is today's value, not a refusal.
  flat = checks.check_fields(_config(train__kind="sgd"), _table(), leaves=("grid",),
                             aliases=RENAMED)
  assert flat["train.kind"] == "sgd"
  with pytest.raises(ConfigError, match=r"config.train.kind = 'lion': allowed: one of"):
    checks.check_fields(_config(train__kind="lion"), _table(), leaves=("grid",),
                        aliases=RENAMED)


def test_a_missing_field_says_where_configs_start_from():
  c = _config()
  del c.train["kind"]
  with pytest.raises(ConfigError, match=r"config.train.kind is missing; start study configs from "
                                        r"my_base\(\)"):
    checks.check_fields(c, _table(), leaves=("grid",), start_from="my_base()")


def test_flatten_keeps_leaf_sections_whole():
  flat = checks.flatten({"a": {"b": 1, "c": {"d": 2}}, "grid": {"w": 3}}, leaves=("grid",))
  assert flat == {"a.b": 1, "a.c.d": 2, "grid": {"w": 3}}


def test_presets():
  assert checks.study_preset("x", "", ("default", "smoke")) == "default"
  assert checks.study_preset("x", "smoke", ("default", "smoke")) == "smoke"
  with pytest.raises(ConfigError, match=r"configs/x.py:smok: unknown preset; allowed: "
                                        r"\('default', 'smoke'\)"):
    checks.study_preset("x", "smok", ("default", "smoke"))


def test_close_names_is_empty_without_a_close_one():
  assert checks.close_names("zzz", ["steps"]) == ""
  assert checks.close_names("step", ["steps"], "--") == "; did you mean --steps?"
