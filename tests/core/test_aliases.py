"""Tests of the alias map: an old config (as config.json stores it) translated into today's
fields, values and study names, and today's name of one old field or value."""

import pytest

from rare_tasks.core.aliases import NO_ALIASES, Aliases

ALIASES = Aliases(
    studies={"old_study": "new_study"},
    fields={"task.rare_frequency": "injection.frequency", "learned_fvu": "learned.threshold",
            "grid.rare_frequency": "grid.frequency", "injection.mode": "injection.schedule"},
    values={"injection.schedule": {"mixture": "steady"}})


def _old():
  return {"study": "old_study", "seed": 3, "learned_fvu": 0.8,
          "task": {"name": "linear_mixture", "rare_frequency": 0.01},
          "injection": {"mode": "mixture", "gap": 1},
          "grid": {"rare_frequency": [0.01, 0.1], "width": [2, 8]}}


def test_an_old_config_comes_out_in_todays_names():
  assert ALIASES.translate(_old()) == {
      "study": "new_study", "seed": 3, "learned": {"threshold": 0.8},
      "task": {"name": "linear_mixture"},
      "injection": {"schedule": "steady", "gap": 1, "frequency": 0.01},
      "grid": {"frequency": [0.01, 0.1], "width": [2, 8]}}


def test_translation_copies_and_leaves_the_old_config_alone():
  old = _old()
  ALIASES.translate(old)
  assert old == _old()


def test_a_config_already_in_todays_names_is_unchanged():
  today = ALIASES.translate(_old())
  assert ALIASES.translate(today) == today
  assert NO_ALIASES.translate(_old()) == _old()


def test_fields_and_values_the_map_does_not_name_are_untouched():
  old = _old() | {"unknown": {"deep": {"field": "mixture"}}, "study": "another"}
  old["injection"]["schedule_like"] = "mixture"
  new = ALIASES.translate(old)
  assert new["unknown"] == {"deep": {"field": "mixture"}} and new["study"] == "another"
  assert new["injection"]["schedule_like"] == "mixture"


def test_only_values_of_the_same_type_are_renamed():
  aliases = Aliases(values={"flag": {1: "one", "x": "y"}})
  assert aliases.translate({"flag": True}) == {"flag": True}
  assert aliases.translate({"flag": 1}) == {"flag": "one"}
  assert aliases.translate({"flag": ["x", "z"]}) == {"flag": ["y", "z"]}


def test_a_section_moves_whole_and_an_emptied_section_is_dropped():
  aliases = Aliases(fields={"a.b": "c", "x.y.z": "w"})
  assert aliases.translate({"a": {"b": {"d": 1, "e": 2}, "f": 3}, "x": {"y": {"z": 4}}}) == {
      "a": {"f": 3}, "c": {"d": 1, "e": 2}, "w": 4}


def test_two_fields_may_swap_names():
  aliases = Aliases(fields={"p": "q", "q": "p"})
  assert aliases.translate({"p": 1, "q": 2}) == {"p": 2, "q": 1}


@pytest.mark.parametrize("old,new", [
    ("task.rare_frequency", "injection.frequency"),
    ("learned_fvu", "learned.threshold"),
    ("task.name", None),
    ("task", None),
    ("mode", None),
])
def test_renamed_gives_todays_name_of_a_field(old, new):
  assert ALIASES.renamed(old) == new


def test_renamed_follows_a_renamed_section_to_its_fields():
  aliases = Aliases(fields={"train": "training", "train.lr": "optimizer.lr"})
  assert aliases.renamed("train.steps") == "training.steps"
  assert aliases.renamed("train.lr") == "optimizer.lr"  # the longest renamed prefix wins


def test_new_value_returns_the_same_object_when_not_renamed():
  value = ["bursts"]
  assert ALIASES.new_value("injection.schedule", value) is value
  assert ALIASES.new_value("injection.schedule", "mixture") == "steady"
  assert ALIASES.new_value("injection.gap", "mixture") == "mixture"


def test_the_map_is_read_only():
  with pytest.raises(TypeError):
    ALIASES.fields["a"] = "b"
  with pytest.raises(TypeError):
    ALIASES.values["injection.schedule"]["a"] = "b"


def test_a_config_predating_a_field_reads_with_what_its_absence_meant():
  added = Aliases(fields={"task.rare_frequency": "injection.frequency"},
                  absent={"train.rng": "threefry2x32", "injection.frequency": 0.5})
  old = {"task": {"rare_frequency": 0.01}, "train": {"steps": 3}}
  assert added.lacking(old) == {"train.rng": "threefry2x32"}  # the renamed field is there
  assert added.translate(old) == {"injection": {"frequency": 0.01},
                                  "train": {"steps": 3, "rng": "threefry2x32"}}
  today = {"injection": {"frequency": 0.01}, "train": {"steps": 3, "rng": "philox4x32"}}
  assert added.lacking(today) == {} and added.translate(today) == today
