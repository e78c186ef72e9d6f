"""Tests of rare_tasks/workdir.py: config guard, append-only metrics, reading after a kill."""

import json

import pytest

from rare_tasks import workdir
from rare_tasks.config_schema import base_config


def test_prepare_writes_config_and_accepts_the_same_config(tmp_path):
  c = base_config()
  wd = workdir.prepare(tmp_path / "run", c, overwrite=False)
  assert json.loads((wd / "config.json").read_text())["model"]["width"] == 32
  assert (wd / "figures").is_dir()
  (wd / "metrics.jsonl").write_text("kept\n")
  workdir.prepare(tmp_path / "run", base_config(), overwrite=False)
  assert (wd / "metrics.jsonl").read_text() == "kept\n"


def test_prepare_refuses_another_config_naming_the_difference(tmp_path):
  workdir.prepare(tmp_path, base_config(), overwrite=False)
  other = base_config()
  other.train.learning_rate = 0.1
  with pytest.raises(workdir.WorkdirError, match=r"config.train.learning_rate: 0.003 there, "
                     r"0.1 now.*--overwrite"):
    workdir.prepare(tmp_path, other, overwrite=False)
  (tmp_path / "metrics.jsonl").write_text("old\n")
  workdir.prepare(tmp_path, other, overwrite=True)
  assert not (tmp_path / "metrics.jsonl").exists()
  assert json.loads((tmp_path / "config.json").read_text())["train"]["learning_rate"] == 0.1


def test_metrics_are_appended_and_a_rewrite_wins(tmp_path):
  workdir.append_metrics(tmp_path, [{"cell": 0, "step": 0, "v": 1}, {"cell": 1, "step": 0, "v": 2}])
  workdir.append_metrics(tmp_path, [{"cell": 0, "step": 0, "v": 3}])
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert len(lines) == 3  # nothing rewritten in place
  records = workdir.read_metrics(tmp_path)
  assert [(r["cell"], r["v"]) for r in records] == [(0, 3), (1, 2)]


def test_a_line_cut_short_by_a_kill_is_skipped(tmp_path):
  workdir.append_metrics(tmp_path, [{"cell": 0, "step": 5, "v": 1}])
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"cell": 0, "step": 6, "v"')
  assert [r["step"] for r in workdir.read_metrics(tmp_path)] == [5]
  assert workdir.read_metrics(tmp_path / "missing") == []


def test_a_record_appended_after_a_cut_line_is_kept(tmp_path):
  workdir.append_metrics(tmp_path, [{"cell": 0, "step": 5, "v": 1}])
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"cell": 1, "step": 5, "v"')
  workdir.append_metrics(tmp_path, [{"cell": 1, "step": 5, "v": 2}])
  assert [(r["cell"], r["v"]) for r in workdir.read_metrics(tmp_path)] == [(0, 1), (1, 2)]


def test_a_non_empty_directory_without_a_run_is_refused_even_with_overwrite(tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  for overwrite in (False, True):
    with pytest.raises(workdir.WorkdirError, match="holds no rare_tasks run"):
      workdir.prepare(tmp_path, base_config(), overwrite=overwrite)
  assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_deletes_only_the_files_of_the_run(tmp_path):
  workdir.prepare(tmp_path, base_config(), overwrite=False)
  (tmp_path / "checkpoints" / "g").mkdir(parents=True)
  (tmp_path / "results.csv").write_text("old")
  (tmp_path / "notes.txt").write_text("mine")
  other = base_config()
  other.seed = 3
  workdir.prepare(tmp_path, other, overwrite=True)
  assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "results.csv").exists()
  assert (tmp_path / "notes.txt").read_text() == "mine"


def test_checkpoint_interval_is_not_part_of_a_runs_identity(tmp_path):
  workdir.prepare(tmp_path, base_config(), overwrite=False)
  (tmp_path / "metrics.jsonl").write_text("kept\n")
  c = base_config()
  c.checkpoint_interval_s = 600.0
  workdir.prepare(tmp_path, c, overwrite=False)
  assert (tmp_path / "metrics.jsonl").read_text() == "kept\n"
