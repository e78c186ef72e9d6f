"""Tests of rare_tasks/core/workdir.py: config guard, append-only metrics, reading after a kill."""

import json
import math
import threading
import time

import jax
import numpy as np
import pytest

from rare_tasks.core import disk, workdir
from rare_tasks.core.aliases import Aliases
from rare_tasks.synthetic.config import NOT_IDENTITY, base_config
from tests import full_disk

RUN_FILES = ("results.csv", "checkpoints", "summary.md")


def prepare(path, config, overwrite=False):
  """The work directory of a synthetic run, as its studies open it."""
  return workdir.prepare(path, config, overwrite, defaults=base_config(), run_files=RUN_FILES,
                         not_identity=NOT_IDENTITY)


def test_prepare_writes_config_and_accepts_the_same_config(tmp_path):
  c = base_config()
  wd = prepare(tmp_path / "run", c, overwrite=False)
  assert json.loads((wd / "config.json").read_text())["model"]["width"] == 32
  assert (wd / "figures").is_dir()
  (wd / "metrics.jsonl").write_text("kept\n")
  prepare(tmp_path / "run", base_config(), overwrite=False)
  assert (wd / "metrics.jsonl").read_text() == "kept\n"


def test_prepare_refuses_another_config_naming_the_difference(tmp_path):
  prepare(tmp_path, base_config(), overwrite=False)
  other = base_config()
  other.train.learning_rate = 0.1
  with pytest.raises(workdir.WorkdirError, match=r"config.train.learning_rate: 0.003 there, "
                     r"0.1 now.*--overwrite"):
    prepare(tmp_path, other, overwrite=False)
  (tmp_path / "metrics.jsonl").write_text("old\n")
  prepare(tmp_path, other, overwrite=True)
  assert not (tmp_path / "metrics.jsonl").exists()
  assert json.loads((tmp_path / "config.json").read_text())["train"]["learning_rate"] == 0.1


def test_every_process_checks_the_directory_before_process_0_writes_it(tmp_path, monkeypatch):
  # Two processes of one run, as threads: process 1 must not find process 0's figures/ without
  # its config.json (which it would refuse as a directory that holds no run).
  rank = threading.local()
  monkeypatch.setattr(jax, "process_index", lambda: rank.value)
  barrier = threading.Barrier(2, timeout=30)
  monkeypatch.setattr(workdir, "barrier", lambda name: barrier.wait())
  errors = []

  def process(i):
    rank.value = i
    try:
      prepare(tmp_path / "run", base_config())
    except Exception as e:  # noqa: BLE001 -- reported by the assertion below
      errors.append(e)

  first = threading.Thread(target=process, args=(0,))
  first.start()
  time.sleep(0.3)
  assert not (tmp_path / "run").exists()  # process 0 waits for the others' checks
  second = threading.Thread(target=process, args=(1,))
  second.start()
  first.join(30)
  second.join(30)
  assert errors == [] and (tmp_path / "run" / "config.json").exists()


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
      prepare(tmp_path, base_config(), overwrite=overwrite)
  assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_deletes_only_the_files_of_the_run(tmp_path):
  prepare(tmp_path, base_config(), overwrite=False)
  (tmp_path / "checkpoints" / "g").mkdir(parents=True)
  (tmp_path / "results.csv").write_text("old")
  (tmp_path / "notes.txt").write_text("mine")
  other = base_config()
  other.seed = 3
  prepare(tmp_path, other, overwrite=True)
  assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "results.csv").exists()
  assert (tmp_path / "notes.txt").read_text() == "mine"


def test_checkpoint_interval_is_not_part_of_a_runs_identity(tmp_path):
  prepare(tmp_path, base_config(), overwrite=False)
  (tmp_path / "metrics.jsonl").write_text("kept\n")
  c = base_config()
  c.checkpoint_interval_s = 600.0
  prepare(tmp_path, c, overwrite=False)
  assert (tmp_path / "metrics.jsonl").read_text() == "kept\n"


def _old_run(path, drop_section="measure"):
  """A work directory whose config.json predates the `drop_section` fields."""
  old = workdir.config_json(base_config())
  del old[drop_section]
  path.mkdir(parents=True, exist_ok=True)
  (path / "config.json").write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
  (path / "metrics.jsonl").write_text("kept\n")
  return old


def test_a_field_absent_from_an_older_run_is_no_difference_at_its_default(tmp_path):
  old = _old_run(tmp_path)
  prepare(tmp_path, base_config(), overwrite=False)
  assert (tmp_path / "metrics.jsonl").read_text() == "kept\n"
  # The older run's config is left as it was.
  assert json.loads((tmp_path / "config.json").read_text()) == old


@pytest.mark.parametrize("field,value,shown", [
    ("allocation", True, "'allocation': True"),
    ("interference_samples", 64, "'interference_samples': 64"),
])
def test_a_section_absent_from_an_older_run_differs_from_a_non_default(tmp_path, field, value,
                                                                      shown):
  # The whole section is absent there: the difference names the section and its new value.
  _old_run(tmp_path)
  c = base_config()
  c.measure[field] = value
  with pytest.raises(workdir.WorkdirError) as err:
    prepare(tmp_path, c, overwrite=False)
  msg = str(err.value)
  assert "config.measure: (absent) there, {" in msg and shown in msg
  assert (tmp_path / "metrics.jsonl").read_text() == "kept\n"


def test_one_field_absent_from_an_older_run_is_named(tmp_path):
  old = workdir.config_json(base_config())
  del old["injection"]["withhold_steps"]
  (tmp_path / "config.json").write_text(json.dumps(old))
  prepare(tmp_path, base_config(), overwrite=False)
  c = base_config()
  c.injection.withhold_steps = 100
  with pytest.raises(workdir.WorkdirError,
                     match=r"config.injection.withhold_steps: \(absent\) there, 100 now"):
    prepare(tmp_path, c, overwrite=False)
  c = base_config()
  c.injection.gap = 2  # present there: an ordinary difference
  with pytest.raises(workdir.WorkdirError, match=r"config.injection.gap: 1 there, 2 now"):
    prepare(tmp_path, c, overwrite=False)


def test_an_absent_top_level_field_at_its_default_is_no_difference(tmp_path):
  old = workdir.config_json(base_config())
  del old["eval_samples"]
  (tmp_path / "config.json").write_text(json.dumps(old))
  prepare(tmp_path, base_config(), overwrite=False)
  c = base_config()
  c.eval_samples = 512
  with pytest.raises(workdir.WorkdirError, match=r"config.eval_samples: \(absent\) there, 512 now"):
    prepare(tmp_path, c, overwrite=False)


def test_a_field_present_in_an_older_run_but_gone_now_is_a_difference(tmp_path):
  old = workdir.config_json(base_config())
  old["measure"]["retired"] = 3
  (tmp_path / "config.json").write_text(json.dumps(old))
  with pytest.raises(workdir.WorkdirError,
                     match=r"config.measure.retired: 3 there, \(absent\) now"):
    prepare(tmp_path, base_config(), overwrite=False)


def test_write_bytes_is_atomic(tmp_path):
  path = tmp_path / "interference.npz"
  data = bytes(range(256)) * 100
  workdir.write_bytes(path, data)
  assert path.read_bytes() == data
  workdir.write_bytes(path, b"second")
  assert path.read_bytes() == b"second"
  assert [p.name for p in tmp_path.iterdir()] == ["interference.npz"]


def test_overwrite_deletes_the_declared_files_only(tmp_path):
  prepare(tmp_path, base_config())
  for name in ("results.csv", "summary.md", "allocation.csv"):
    (tmp_path / name).write_text("old")
  other = base_config()
  other.seed = 3
  workdir.prepare(tmp_path, other, True, defaults=base_config(), run_files=("results.csv",))
  assert not (tmp_path / "results.csv").exists()
  # Not declared: kept, though a run of another study may have written it.
  assert (tmp_path / "summary.md").read_text() == "old"
  assert (tmp_path / "allocation.csv").read_text() == "old"


def test_a_changed_report_field_is_recorded_without_a_difference(tmp_path):
  prepare(tmp_path, base_config())
  (tmp_path / "metrics.jsonl").write_text("kept\n")
  c = base_config()
  c.scaling.small_width = 4  # not part of the run's identity
  prepare(tmp_path, c)
  assert (tmp_path / "metrics.jsonl").read_text() == "kept\n"
  assert json.loads((tmp_path / "config.json").read_text())["scaling"]["small_width"] == 4


def test_a_directory_that_cannot_be_created_is_a_workdir_error(tmp_path):
  (tmp_path / "file").write_text("not a folder")
  with pytest.raises(workdir.WorkdirError, match=r"file/run: cannot create or write"):
    prepare(tmp_path / "file" / "run", base_config())
  with pytest.raises(workdir.WorkdirError, match=r"is a file, not a work directory"):
    prepare(tmp_path / "file", base_config())


def test_load_config_lays_an_older_run_over_the_defaults(tmp_path):
  old = workdir.config_json(base_config())
  del old["scaling"]
  old["train"]["steps"] = 7
  (tmp_path / "config.json").write_text(json.dumps(old))
  config = workdir.load_config(tmp_path, base_config())
  assert config.train.steps == 7 and config.scaling.epsilon == 0.05
  assert tuple(config.grid.width) == (32,)


# The map of a track whose older version called train.steps num_steps, the measure section
# probes, the optimizer "adam" "adaptive" and the study "grid" "sweep".
RENAMED = Aliases(fields={"num_steps": "train.steps", "probes": "measure"},
                  values={"train.optimizer": {"adaptive": "adam"}}, studies={"sweep": "grid"})


def _renamed(config):
  """config.json of `config` as the older version wrote it."""
  old = workdir.config_json(config)
  old["num_steps"] = old["train"].pop("steps")
  old["probes"] = old.pop("measure")
  old["train"]["optimizer"] = {"adam": "adaptive"}[old["train"]["optimizer"]]
  old["study"] = {"grid": "sweep"}[old["study"]]
  return old


def test_a_run_written_under_old_names_resumes_through_the_alias_map(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps(_renamed(base_config())))
  before = (tmp_path / "config.json").read_text()
  with pytest.raises(workdir.WorkdirError, match=r"config.num_steps: 2000 there, \(absent\)"):
    prepare(tmp_path, base_config())  # without the map: another config
  workdir.prepare(tmp_path, base_config(), False, defaults=base_config(), run_files=RUN_FILES,
                  not_identity=NOT_IDENTITY, aliases=RENAMED)
  assert (tmp_path / "config.json").read_text() == before  # the same run: nothing rewritten
  other = base_config()
  other.train.steps = 5
  with pytest.raises(workdir.WorkdirError, match=r"config.train.steps: 2000 there, 5 now"):
    workdir.prepare(tmp_path, other, False, defaults=base_config(), run_files=RUN_FILES,
                    not_identity=NOT_IDENTITY, aliases=RENAMED)


def test_load_config_reads_a_run_written_under_old_names_in_todays(tmp_path):
  c = base_config()
  c.train.steps, c.measure.interference = 7, True
  (tmp_path / "config.json").write_text(json.dumps(_renamed(c)))
  loaded = workdir.load_config(tmp_path, base_config(), aliases=RENAMED)
  assert workdir.config_json(loaded) == workdir.config_json(c)


def test_json_numbers_write_nan_as_null():
  out = workdir.json_numbers(np.array([[1.5, np.nan], [math.inf, 0.0]], np.float32))
  assert out == [[1.5, None], [math.inf, 0.0]]
  assert workdir.json_numbers(np.float32(np.nan)) is None


def test_a_section_with_a_not_identity_field_absent_from_an_older_run_is_no_difference(
    tmp_path):
  """design.target_frequencies is not part of a run's identity: an older run without the whole
  design section is still this run at the defaults, and its files stay."""
  assert "design.target_frequencies" in NOT_IDENTITY
  _old_run(tmp_path, drop_section="design")
  prepare(tmp_path, base_config(), overwrite=False)
  assert (tmp_path / "metrics.jsonl").read_text() == "kept\n"
  c = base_config()
  c.design.target_frequencies = (0.01,)
  prepare(tmp_path, c, overwrite=False)
  assert (tmp_path / "metrics.jsonl").read_text() == "kept\n"


# -- a full disk -------------------------------------------------------------------------------

@pytest.mark.parametrize("write", [workdir.write_text, workdir.write_bytes])
def test_a_whole_file_write_on_a_full_disk_keeps_the_old_file_and_leaves_no_tmp(tmp_path,
                                                                                 monkeypatch,
                                                                                 write):
  path = tmp_path / "summary.md"
  data = "old\n" if write is workdir.write_text else b"old\n"
  write(path, data)
  refused = full_disk.fill_path_writes(monkeypatch, lambda p: p.name.endswith(".tmp"))
  with pytest.raises(disk.DiskFull, match=f"cannot write {path}: no space left") as caught:
    write(path, data * 1000)
  assert caught.value.path == str(path) and refused
  assert path.read_bytes() == b"old\n"
  assert [p.name for p in tmp_path.iterdir()] == ["summary.md"]
  monkeypatch.undo()
  write(path, data * 2)  # space freed: the same write succeeds
  assert path.read_bytes() == b"old\nold\n"


def test_a_full_disk_at_the_rename_also_leaves_no_tmp(tmp_path, monkeypatch):
  path = tmp_path / "config.json"
  workdir.write_text(path, "{}\n")

  def replace(src, dst):
    raise full_disk.no_space(dst)

  monkeypatch.setattr(workdir.os, "replace", replace)
  with pytest.raises(disk.DiskFull, match="config.json"):
    workdir.write_text(path, '{"a": 1}\n')
  assert path.read_text() == "{}\n" and [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_any_other_failed_write_also_leaves_no_tmp(tmp_path, monkeypatch):
  def replace(src, dst):
    raise PermissionError(13, "Permission denied", str(dst))

  monkeypatch.setattr(workdir.os, "replace", replace)
  with pytest.raises(PermissionError):
    workdir.write_bytes(tmp_path / "x.npz", b"data")
  assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("at", ["write", "fsync"])
def test_metrics_cut_by_a_full_disk_are_cut_back_and_a_resume_appends_cleanly(tmp_path,
                                                                             monkeypatch, at):
  workdir.append_metrics(tmp_path, [{"cell": 0, "step": 0, "v": 1}])
  path = tmp_path / "metrics.jsonl"
  before = path.read_bytes()
  full_disk.fill_appends(monkeypatch, lambda p: p == path, at)
  with pytest.raises(disk.DiskFull, match=f"cannot write {path}: no space left"):
    workdir.append_metrics(tmp_path, [{"cell": c, "step": 5, "v": 2} for c in range(50)])
  assert path.read_bytes() == before  # no half record: the file is as it was
  monkeypatch.undo()
  workdir.append_metrics(tmp_path, [{"cell": c, "step": 5, "v": 2} for c in range(50)])
  assert len(workdir.read_metrics(tmp_path)) == 51
  assert path.read_text().count("\n") == 51


def test_a_full_disk_after_a_line_cut_by_a_kill_keeps_the_cut_line_apart(tmp_path, monkeypatch):
  workdir.append_metrics(tmp_path, [{"cell": 0, "step": 5, "v": 1}])
  path = tmp_path / "metrics.jsonl"
  with open(path, "a") as f:
    f.write('{"cell": 1, "step": 5, "v"')
  full_disk.fill_appends(monkeypatch, lambda p: p == path)
  with pytest.raises(disk.DiskFull):
    workdir.append_metrics(tmp_path, [{"cell": 1, "step": 5, "v": 2}])
  monkeypatch.undo()
  workdir.append_metrics(tmp_path, [{"cell": 1, "step": 5, "v": 2}])
  assert [(r["cell"], r["v"]) for r in workdir.read_metrics(tmp_path)] == [(0, 1), (1, 2)]


# A field added after some runs were made, whose absence meant another value than today's default.
ADDED = Aliases(absent={"train.momentum": 0.9})


def _older_run(path):
  """A run's config.json written before train.momentum existed."""
  old = workdir.config_json(base_config())
  del old["train"]["momentum"]
  path.mkdir()
  (path / "config.json").write_text(json.dumps(old))


def test_a_run_predating_a_field_goes_on_with_what_its_absence_meant(tmp_path):
  _older_run(tmp_path / "run")
  c = base_config()
  assert c.train.momentum == 0.0
  workdir.prepare(tmp_path / "run", c, False, defaults=base_config(), run_files=RUN_FILES,
                  not_identity=NOT_IDENTITY, aliases=ADDED)
  assert c.train.momentum == 0.9
  assert "momentum" not in json.loads((tmp_path / "run" / "config.json").read_text())["train"]
  loaded = workdir.load_config(tmp_path / "run", base_config(), aliases=ADDED)
  assert loaded.train.momentum == 0.9


def test_a_run_predating_a_field_is_another_config_for_a_value_other_than_the_default(tmp_path):
  _older_run(tmp_path / "run")
  c = base_config()
  c.train.momentum = 0.5
  with pytest.raises(workdir.WorkdirError,
                     match=r"config.train.momentum: 0.9 there, 0.5 now"):
    workdir.prepare(tmp_path / "run", c, False, defaults=base_config(), run_files=RUN_FILES,
                    not_identity=NOT_IDENTITY, aliases=ADDED)
  assert c.train.momentum == 0.5


def test_a_new_run_keeps_todays_default(tmp_path):
  c = base_config()
  workdir.prepare(tmp_path / "run", c, False, defaults=base_config(), run_files=RUN_FILES,
                  not_identity=NOT_IDENTITY, aliases=ADDED)
  assert c.train.momentum == 0.0
  assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["momentum"] == 0.0
