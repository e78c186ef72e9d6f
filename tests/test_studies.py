"""Tests of rare_tasks/studies.py: config.study -> its study, with every study's files for
--overwrite, an unknown study refused before anything is written, and a study's module imported
only when it runs."""

import subprocess
import sys
from pathlib import Path

import pytest

from rare_tasks import studies
from rare_tasks.core.aliases import NO_ALIASES
from rare_tasks.core.config import ConfigError
from rare_tasks.synthetic import config as schema
from rare_tasks.synthetic.config import base_config


def test_every_study_is_dispatched_with_the_files_of_all_studies(monkeypatch, tmp_path):
  calls = []

  class Fake:
    FILES = ()

    @staticmethod
    def run(config, workdir_path, **kwargs):
      calls.append((config.study, workdir_path, kwargs))
      return "report"

  monkeypatch.setattr(studies, "study_module", lambda name: Fake)
  c = base_config()
  for study in ("grid", "mixture_design"):
    c.study = study
    assert studies.run(c, tmp_path, overwrite=True) == "report"
  assert [(s, kw["overwrite"]) for s, _, kw in calls] == [("grid", True), ("mixture_design", True)]
  assert all(kw["run_files"] == studies.RUN_FILES for _, _, kw in calls)


def test_a_study_gives_its_tracks_alias_map_and_others_none():
  c = base_config()
  for study in ("grid", "mixture_design"):
    c.study = study
    assert studies.aliases_of(c) is schema.ALIASES
  c.study = "no_such_study"
  assert studies.aliases_of(c) is NO_ALIASES
  assert studies.aliases_of({"study": ["grid"]}) is NO_ALIASES


def test_run_files_hold_every_file_either_study_writes():
  for name in ("results.csv", "predictions.json", "summary.md", "checkpoints", "traces",
               "allocation.csv", "interference.npz", "scaling_fit.json", "mixture_design.csv",
               "min_width.csv", "rounds", "learning_order.csv", "retention.csv"):
    assert name in studies.RUN_FILES, name
  assert {"figures/width_by_frequency.png", "figures/mixture_design.png"} <= set(studies.RUN_FILES)


def test_an_unknown_study_is_refused_before_anything_is_written(tmp_path):
  c = base_config()
  c.study = "grdi"
  with pytest.raises(ConfigError, match=r"config.study = 'grdi': allowed: one of \['grid', "
                                        r"'lm_mixture_design', 'lm_pretrain', "
                                        r"'lm_size_by_frequency', 'mixture_design'\]"):
    studies.run(c, tmp_path / "wd")
  assert not (tmp_path / "wd").exists()


def test_run_files_hold_the_language_model_studies_files_too():
  from rare_tasks.lm import grid_study, mixture_design, pretrain

  assert set(pretrain.FILES) | set(grid_study.FILES) <= set(studies.RUN_FILES)
  assert {"tradeoff.csv", "min_size.csv", "rounds"} <= set(mixture_design.FILES)
  assert set(mixture_design.FILES) <= set(studies.RUN_FILES)
  assert len(studies.RUN_FILES) == len(set(studies.RUN_FILES)) == len(list(studies.RUN_FILES))
  assert studies.RUN_FILES[0] == list(studies.RUN_FILES)[0]


def test_a_synthetic_run_does_not_import_the_language_model_track():
  probe = (
      "import sys, experiments.main\n"
      "from rare_tasks import studies\n"
      "studies.study_module('grid'); studies.study_module('mixture_design')\n"
      "print(sorted(m for m in sys.modules if m.startswith('rare_tasks.lm')))\n"
      "print('checkpoints' in studies.RUN_FILES, 'rare_tasks.lm.pretrain' in sys.modules)\n")
  out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                       cwd=Path(__file__).resolve().parents[1]).stdout.splitlines()
  assert out == ["[]", "True True"]  # reading RUN_FILES imports every study


def test_a_renamed_study_is_refused_with_its_new_name(tmp_path):
  assert studies.renamed_study("lm_width_by_frequency") == "lm_size_by_frequency"
  assert studies.renamed_study("grdi") is None
  c = base_config()
  c.study = "lm_width_by_frequency"
  with pytest.raises(ConfigError, match=r"^config.study = 'lm_width_by_frequency' was renamed "
                                        r"'lm_size_by_frequency'$"):
    studies.run(c, tmp_path / "wd")
  assert not (tmp_path / "wd").exists()
