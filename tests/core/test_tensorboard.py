"""Tests of rare_tasks/core/tensorboard.py with programs of numpy arithmetic run by the engine:
the events read back equal the headline fields of metrics.jsonl, one run directory per model,
flushed at every evaluation, no file left open after a program; a killed run resumed shows no
stale or duplicated point (its new files purge from its first step); a finished run, even one
whose final record is measured again, writes nothing; nothing is written when off or on another
process than 0; run names."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rare_tasks.core import engine, tensorboard, workdir
from rare_tasks.core.checkpoints import GroupCheckpoints
from tests.callbacks import Killed, kill_at
from tests.tensorboard_events import as_float32, event_files, purge_steps, read_events, runs, shown

HEADLINE = ("loss", "invocation", "note", "diverged")


class Models:
  """Two models (cells `first` and `first + 1`) whose state is the sum of the updates trained
  (update t adds t + 1). Cell m's record: loss = sum x (m + 1); which invocation wrote it; a note
  that is None; `diverged`, NaN for an odd cell; and its width (a grid value, no headline
  field)."""

  measures_start = True
  steps = 10

  def __init__(self, wd, invocation=0, first=0):
    self.wd, self.invocation, self.cells = wd, invocation, (first, first + 1)
    self.name = f"models{first}"
    self.checkpoint_dir = f"checkpoints/{self.name}"

  def boundaries(self):
    return [2, 4, 6, 8, 10]

  def evaluation_steps(self):
    return [4, 8, 10]

  def init(self):
    return np.zeros((), np.int64)

  def restore(self, checkpoints: GroupCheckpoints, step):
    return checkpoints.restore({"x": np.zeros((), np.int64)}, step)["x"]

  def start(self, step):
    pass

  def train(self, state, first_step, num_steps):
    return state + (np.arange(first_step, first_step + num_steps) + 1).sum(), None

  def start_outputs(self, state):
    return None

  def evaluate(self, state):
    return np.array(state)

  def records(self, step, outputs, measured):
    return [{"cell": m, "step": step, "width": 2 * (m + 1), "loss": float(measured) * (m + 1),
             "invocation": self.invocation, "note": None,
             "diverged": float("nan") if m % 2 else 0.5} for m in self.cells]

  def checkpoint(self, state, step):
    return {"x": np.asarray(state)}

  def final_recorded(self):
    done = {r["cell"] for r in workdir.read_metrics(self.wd) if r["step"] == self.steps}
    return set(self.cells) <= done

  def describe(self, records):
    return ""

  def label(self, record):
    return f"cell {record['cell']}"

  def headline(self, record):
    return {k: record[k] for k in HEADLINE}


def _name(record):
  return f"width={record['width']}"


def _run(wd, invocation=0, extra=(), enabled=True):
  """Trains Models in wd with TensorBoard under wd/tensorboard, `extra` callbacks after it."""
  with tensorboard.writing(enabled, wd / tensorboard.DIR, _name) as logged:
    return engine.run(Models(wd, invocation), wd, [*logged, *extra])


def _open_event_files():
  """The event files this process holds open (read from /proc)."""
  fds = Path("/proc/self/fd")
  if not fds.exists():
    pytest.skip("needs /proc")
  out = []
  for fd in fds.iterdir():
    try:
      target = os.readlink(fd)
    except OSError:  # closed since it was listed
      continue
    if "tfevents" in target:
      out.append(Path(target).parent.name)
  return sorted(out)


def _expected(wd, run_name):
  """The headline scalars of a model's records in metrics.jsonl: {tag: {step: value}}, None
  and NaN left out."""
  out = {}
  for r in workdir.read_metrics(wd):
    if _name(r) == run_name:
      for k in HEADLINE:
        if r[k] is not None and math.isfinite(r[k]):
          out.setdefault(k, {})[r["step"]] = as_float32(r[k])
  return out


def test_every_models_headline_fields_are_its_runs_scalars(tmp_path):
  assert _run(tmp_path) == 10
  board = tmp_path / tensorboard.DIR
  assert runs(board) == ["width=2", "width=4"]
  for name in runs(board):
    scalars = shown(board / name)
    assert scalars == _expected(tmp_path, name)  # the golden comparison
    assert set(scalars) == ({"loss", "invocation", "diverged"} if name == "width=2"
                            else {"loss", "invocation"})  # None and NaN left out
    assert sorted(scalars["loss"]) == [0, 4, 8, 10]
    assert purge_steps(board / name) == [0]  # a fresh start
    assert len(event_files(board / name)) == 1
  assert _open_event_files() == []


def test_programs_trained_one_after_another_hold_only_their_own_files_open(tmp_path):
  held = []
  watch = engine.Callback(lambda event: held.append((event.program.name, _open_event_files())),
                          when="evaluation")
  with tensorboard.writing(True, tmp_path / tensorboard.DIR, _name) as logged:
    for first in (0, 2):
      engine.run(Models(tmp_path, first=first), tmp_path, [*logged, watch])
      assert _open_event_files() == []  # closed at the program's end
  assert held == ([("models0", ["width=2", "width=4"])] * 4
                  + [("models2", ["width=6", "width=8"])] * 4)
  assert runs(tmp_path / tensorboard.DIR) == ["width=2", "width=4", "width=6", "width=8"]


def test_each_evaluation_is_on_disk_when_its_callbacks_run(tmp_path):
  seen = []

  def read(event):
    seen.append((event.step, sorted(shown(tmp_path / tensorboard.DIR / "width=2")["loss"])))

  _run(tmp_path, extra=[engine.Callback(read, when="evaluation")])
  assert seen == [(0, [0]), (4, [0, 4]), (8, [0, 4, 8]), (10, [0, 4, 8, 10])]



def test_a_killed_run_resumed_shows_each_step_once_from_its_latest_invocation(tmp_path,
                                                                               monkeypatch):
  # Killed once the records of step 8 are written, before its checkpoint: the resume from the
  # checkpoint at 4 writes step 8 again.
  monkeypatch.setattr(GroupCheckpoints, "save", _save_except_at(GroupCheckpoints.save, 8))
  with pytest.raises(Killed):
    _run(tmp_path, invocation=1, extra=[kill_at(8, "evaluation")])
  monkeypatch.undo()
  assert _run(tmp_path, invocation=2) == 6
  board = tmp_path / tensorboard.DIR
  for name in ("width=2", "width=4"):
    assert purge_steps(board / name) == [0, 5]  # the resumed invocation's first step
    assert len(event_files(board / name)) == 2
    first = [e.step for e in read_events(event_files(board / name)[0]) if e.summary.value]
    assert first == [0, 4, 8]  # the stale point at 8, hidden by the purge
    scalars = shown(board / name)
    assert scalars == _expected(tmp_path, name)
    assert scalars["invocation"] == {0: 1.0, 4: 1.0, 8: 2.0, 10: 2.0}


def _save_except_at(save, step):
  def fn(self, at, tree):
    if at != step:
      save(self, at, tree)
  return fn


def test_a_finished_run_writes_nothing_new(tmp_path):
  _run(tmp_path)
  files = _files(tmp_path)
  assert _run(tmp_path) == 0
  assert _files(tmp_path) == files


def test_a_final_record_measured_again_writes_nothing(tmp_path):
  _run(tmp_path)
  files = _files(tmp_path)
  lines = (tmp_path / workdir.METRICS_FILE).read_text().splitlines()
  kept = [line for line in lines if json.loads(line)["step"] != 10]
  (tmp_path / workdir.METRICS_FILE).write_text("\n".join(kept) + "\n")
  assert _run(tmp_path) == 0
  assert {r["cell"] for r in workdir.read_metrics(tmp_path) if r["step"] == 10} == {0, 1}
  assert _files(tmp_path) == files


def _files(wd):
  return {p: p.read_bytes() for p in sorted((wd / tensorboard.DIR).rglob("*")) if p.is_file()}


def test_nothing_is_written_when_off_or_on_another_process(tmp_path, monkeypatch):
  _run(tmp_path / "off", enabled=False)
  assert not (tmp_path / "off" / tensorboard.DIR).exists()
  monkeypatch.setattr(workdir, "is_writer", lambda: False)
  with tensorboard.writing(True, tmp_path / "other", _name) as logged:
    assert logged == ()


def test_a_stopped_program_has_its_files_closed_when_the_block_ends(tmp_path):
  with pytest.raises(Killed):
    _run(tmp_path, extra=[kill_at(4, "evaluation")])
  assert _open_event_files() == []
  assert sorted(shown(tmp_path / tensorboard.DIR / "width=2")["loss"]) == [0, 4]


def test_run_names_say_the_grid_values_that_tell_models_apart_safely():
  models = [{"width": 8, "rare_frequency": 0.01, "seed": 0, "gap": 1, "lr": 1e-05,
             "tasks": ["a b", "c/d"]},
            {"width": 8, "rare_frequency": 0.01, "seed": 1, "gap": 1, "lr": 0.1, "tasks": []}]
  names = tensorboard.run_names(models, ("width", "rare_frequency", "seed"),
                                ("gap", "lr", "tasks"), {"rare_frequency": "frequency"})
  assert names == ["width=8,frequency=0.01,seed=0,lr=1e-05,tasks=a_b+c_d",
                   "width=8,frequency=0.01,seed=1,lr=0.1,tasks=none"]
  with pytest.raises(ValueError, match="one per model"):
    tensorboard.run_names(models, ("width",))


def test_an_event_holds_only_finite_numbers():
  event = tensorboard.headline_event(3, {"a": 1.5, "b": None, "c": float("nan"),
                                         "d": float("inf"), "e": 2}, 7.0)
  assert (event.step, event.wall_time) == (3, 7.0)
  assert [(v.tag, v.simple_value) for v in event.summary.value] == [("a", 1.5), ("e", 2.0)]
  assert tensorboard.headline_event(3, {"b": None}, 7.0) is None


def test_a_scalar_is_one_int_or_float_never_a_bool():
  assert [tensorboard.is_scalar(v) for v in (1, 2.5, math.nan, True, None, "1", [1.0])] == [
      True, True, True, False, False, False, False]


def test_starting_a_study_imports_no_tensorboardx():
  # Importing tensorboardX imports torch where torch is installed: over a second at every start.
  code = ("import sys, experiments.main, rare_tasks.synthetic.grid_study, rare_tasks.lm.grid_study;"
          " print(sorted(m for m in ('tensorboardX', 'torch') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=Path(__file__).resolve().parents[2])
  assert out.stdout.strip() == "[]"
