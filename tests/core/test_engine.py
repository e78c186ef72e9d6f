"""Tests of rare_tasks/core/engine.py with a program of numpy arithmetic: the records and
checkpoints of a fresh run, resume after a kill equal to the uninterrupted run, a finished run
trained no further and its lost final record measured again, when each kind of callback runs,
and evaluations written while the next chunk trains."""

import contextlib
import logging
import shutil
import signal

import numpy as np
import pytest

from rare_tasks.core import checkpoints, engine, interrupts, workdir
from rare_tasks.core.checkpoints import GroupCheckpoints
from rare_tasks.core.progress import log
from tests.callbacks import Killed, kill_at


class Counter:
  """A program whose state is the sum of the updates trained (update t adds t + 1)."""

  name = "counter"
  checkpoint_dir = "checkpoints/counter"

  def __init__(self, wd, steps=10, bounds=(2, 4, 6, 8, 10), evals=(4, 8, 10),
               measures_start=True):
    self.wd, self.steps, self._bounds, self._evals = wd, steps, bounds, evals
    self.measures_start = measures_start
    self.log = []

  def boundaries(self):
    return list(self._bounds)

  def evaluation_steps(self):
    return list(self._evals)

  def init(self):
    return np.zeros((), np.int64)

  def restore(self, checkpoints: GroupCheckpoints, step):
    return checkpoints.restore({"x": np.zeros((), np.int64)}, step)["x"]

  def start(self, step):
    self.log.append(("start", step))

  def train(self, state, first_step, num_steps):
    self.log.append(("train", first_step, num_steps))
    updates = np.arange(first_step, first_step + num_steps) + 1
    return state + updates.sum(), updates

  def start_outputs(self, state):
    return np.zeros(0, np.int64)

  def evaluate(self, state):
    return np.array(state)

  def records(self, step, outputs, measured):
    self.log.append(("records", step))
    trained = None if outputs is None else int(sum(len(o) for o in outputs))
    return [{"cell": 0, "step": step, "sum": int(measured), "trained": trained}]

  def checkpoint(self, state, step):
    self.log.append(("checkpoint", step))
    return {"x": np.asarray(state)}

  def final_recorded(self):
    return any(r["step"] == self.steps for r in workdir.read_metrics(self.wd))

  def describe(self, records):
    return ""

  def label(self, record):
    return f"cell {record['cell']}"

  def headline(self, record):
    return {"sum": record["sum"]}


def _sums(wd):
  return [(r["step"], r["sum"], r["trained"]) for r in workdir.read_metrics(wd)]


def test_a_fresh_run_records_every_evaluation_and_checkpoints_the_end(tmp_path):
  p = Counter(tmp_path)
  assert engine.run(p, tmp_path) == 10
  # Sums of 1..t at each evaluation; the chunk outputs since the previous one counted.
  assert _sums(tmp_path) == [(0, 0, 0), (4, 10, 4), (8, 36, 4), (10, 55, 2)]
  # interval 0: every evaluation is checkpointed
  assert [e[1] for e in p.log if e[0] == "checkpoint"] == [4, 8, 10]
  ckpt = GroupCheckpoints(tmp_path / p.checkpoint_dir)
  assert ckpt.latest_step() == 10
  ckpt.close()


def test_without_a_start_measurement_step_zero_is_not_recorded(tmp_path):
  engine.run(Counter(tmp_path, measures_start=False), tmp_path)
  assert [s for s, _, _ in _sums(tmp_path)] == [4, 8, 10]



def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_records(tmp_path):
  engine.run(Counter(tmp_path / "ref"), tmp_path / "ref")
  with pytest.raises(Killed):
    engine.run(Counter(tmp_path / "wd"), tmp_path / "wd", [kill_at(6)])
  p = Counter(tmp_path / "wd")
  assert engine.run(p, tmp_path / "wd") == 6  # from the checkpoint at 4
  assert p.log[0] == ("start", 4) and p.log[1] == ("train", 4, 2)
  assert _sums(tmp_path / "wd") == _sums(tmp_path / "ref")


@contextlib.contextmanager
def logged():
  """The rare_tasks log's lines while the block runs."""
  lines = []
  handler = logging.Handler()
  handler.emit = lambda record: lines.append(record.getMessage())
  log.addHandler(handler)
  try:
    yield lines
  finally:
    log.removeHandler(handler)


def _stop_at(step):
  def fn(event):
    if event.step == step:
      interrupts.request(signal.SIGTERM)
  return engine.Callback(fn)


@pytest.fixture
def no_requests():
  interrupts.uninstall()
  yield
  interrupts.uninstall()


@pytest.mark.parametrize("stop, interval", [(6, 0.0), (4, 1e9), (8, 0.0)])
def test_a_stop_request_checkpoints_the_chunk_in_flight_and_the_resume_equals_the_uninterrupted_run(
    tmp_path, no_requests, stop, interval):
  """6: between evaluations (the chunk outputs since the evaluation at 4 saved beside it); 4:
  an evaluation not yet due for a checkpoint; 8: an evaluation checkpointed anyway."""
  engine.run(Counter(tmp_path / "ref"), tmp_path / "ref")
  wd = tmp_path / "wd"
  with pytest.raises(interrupts.Interrupted, match=f"after step {stop} of counter") as e:
    engine.run(Counter(wd), wd, [_stop_at(stop)], checkpoint_interval_s=interval)
  assert e.value.exit_code == 128 + signal.SIGTERM
  interrupts.uninstall()
  ckpt = GroupCheckpoints(wd / "checkpoints/counter")
  assert ckpt.latest_step() == stop
  ckpt.close()
  assert (wd / f"checkpoints/counter/outputs-{stop}.pkl").exists() == (stop == 6)
  p = Counter(wd)
  assert engine.run(p, wd, checkpoint_interval_s=interval) == 10 - stop
  assert p.log[0] == ("start", stop)
  # the record at 8 counts the 4 updates since 4, two of them trained before the stop
  assert _sums(wd) == _sums(tmp_path / "ref")


def test_a_stop_checkpoint_kept_beside_a_damaged_newer_one_still_resumes_exactly(
    tmp_path, no_requests):
  engine.run(Counter(tmp_path / "ref"), tmp_path / "ref")
  wd = tmp_path / "wd"
  with pytest.raises(interrupts.Interrupted):
    engine.run(Counter(wd), wd, [_stop_at(6)])
  interrupts.uninstall()
  with pytest.raises(Killed):
    engine.run(Counter(wd), wd, [kill_at(8)])  # orbax keeps 6 and 8
  assert (wd / "checkpoints/counter/outputs-6.pkl").exists()
  _damage_newest(wd, "marker")
  p = Counter(wd)
  assert engine.run(p, wd) == 4 and p.log[0] == ("start", 6)
  assert _sums(wd) == _sums(tmp_path / "ref")


def test_a_stop_request_at_the_last_step_stops_nothing(tmp_path, no_requests):
  ends = []
  p = Counter(tmp_path)
  engine.run(p, tmp_path, [_stop_at(10), engine.Callback(lambda e: ends.append(e.step), "end")])
  assert ends == [10] and _sums(tmp_path)[-1] == (10, 55, 2)


def _damage_newest(wd, how):
  ckpt = GroupCheckpoints(wd / "checkpoints/counter")
  newest = wd / "checkpoints/counter" / str(ckpt.latest_step())
  ckpt.close()
  if how == "marker":
    (newest / checkpoints.COMMIT_MARKER).unlink()
  else:
    shutil.rmtree(newest / "state")


@pytest.mark.parametrize("damaged", [1, 2])
def test_a_damaged_checkpoint_is_set_aside_and_the_one_before_used_or_a_fresh_start(
    tmp_path, damaged):
  engine.run(Counter(tmp_path / "ref"), tmp_path / "ref")
  wd = tmp_path / "wd"
  with pytest.raises(Killed):
    engine.run(Counter(wd), wd, [kill_at(8)])  # checkpoints at 4 and 8
  _damage_newest(wd, "marker")
  if damaged == 2:
    ckpt = GroupCheckpoints(wd / "checkpoints/counter")
    ckpt.set_aside(8)
    ckpt.close()
    _damage_newest(wd, "state")
  p = Counter(wd)
  with logged() as lines:
    trained = engine.run(p, wd)
  assert trained == (6 if damaged == 1 else 10)
  said = "\n".join(lines)
  assert "cannot be restored" in said
  assert ("using the one at step 4" in said) if damaged == 1 else ("starting from scratch"
                                                                   in said)
  assert _sums(wd) == _sums(tmp_path / "ref")
  assert len(list((wd / "checkpoints/counter.damaged").iterdir())) == damaged


def test_a_finished_run_trains_nothing_and_measures_a_lost_final_record_again(tmp_path):
  engine.run(Counter(tmp_path), tmp_path)
  p = Counter(tmp_path)
  assert engine.run(p, tmp_path) == 0
  assert not any(e[0] in ("train", "records") for e in p.log)
  lines = (tmp_path / workdir.METRICS_FILE).read_text().splitlines()
  (tmp_path / workdir.METRICS_FILE).write_text("\n".join(lines[:-1]) + "\n")
  p = Counter(tmp_path)
  assert engine.run(p, tmp_path) == 0
  assert p.log == [("start", 10), ("records", 10)]
  assert _sums(tmp_path)[-1] == (10, 55, None)  # re-measured: nothing trained since


def test_callbacks_run_after_chunks_every_n_steps_at_evaluations_and_at_the_end(tmp_path):
  seen = {"chunk": [], "every": [], "evaluation": [], "end": []}

  def spy(kind):
    def fn(event):
      outs = None if event.outputs is None else [list(o) for o in event.outputs]
      seen[kind].append((event.step, event.first_step, outs))
    return fn

  callbacks = [engine.Callback(spy("chunk")), engine.Callback(spy("every"), "every", 3),
               engine.Callback(spy("evaluation"), "evaluation"),
               engine.Callback(spy("end"), "end")]
  engine.run(Counter(tmp_path), tmp_path, callbacks)
  assert [s for s, _, _ in seen["chunk"]] == [2, 4, 6, 8, 10]
  assert seen["chunk"][1] == (4, 3, [[3, 4]])
  # The first chunk ends at or past 3, 6 and 9; each event covers the steps since the last.
  assert seen["every"] == [(4, 1, [[1, 2], [3, 4]]), (6, 5, [[5, 6]]),
                           (10, 7, [[7, 8], [9, 10]])]
  assert seen["evaluation"] == [(0, 0, [[]]), (4, 1, [[1, 2], [3, 4]]),
                                (8, 5, [[5, 6], [7, 8]]), (10, 9, [[9, 10]])]
  assert seen["end"] == [(10, 1, None)]


def test_an_evaluation_is_written_while_the_next_chunk_trains(tmp_path):
  p = Counter(tmp_path)
  engine.run(p, tmp_path, checkpoint_interval_s=1e9)  # only the final checkpoint
  order = [e for e in p.log if e[0] != "start"]
  assert order == [("records", 0), ("train", 0, 2), ("train", 2, 2), ("train", 4, 2),
                   ("train", 6, 2), ("records", 4), ("train", 8, 2), ("records", 8),
                   ("records", 10), ("checkpoint", 10)]


@pytest.mark.parametrize("when,every", [("sometimes", 0), ("every", 0), ("chunk", 5)])
def test_a_callback_with_an_unknown_or_inconsistent_schedule_is_refused(when, every):
  with pytest.raises(ValueError, match="Callback"):
    engine.Callback(lambda e: None, when, every)


def test_the_chunk_outputs_are_concatenated_along_their_steps():
  out = engine.concatenated([{"a": np.arange(2), "b": np.ones((2, 3))},
                             {"a": np.arange(2, 5), "b": np.zeros((3, 3))}])
  np.testing.assert_array_equal(out["a"], np.arange(5))
  assert out["b"].shape == (5, 3) and out["b"][:2].all() and not out["b"][2:].any()


@pytest.mark.parametrize("bounds,evals", [
    ((2, 4, 6, 8), (4, 8)),       # does not end at the last step
    ((2, 6, 4, 8, 10), (4, 10)),  # not ascending
    ((2, 4, 6, 8, 10), (5, 10)),  # an evaluation between two boundaries
    ((2, 4, 6, 8, 10), (4, 8)),   # the last step not evaluated
])
def test_a_program_whose_chunks_miss_an_evaluation_or_the_end_is_refused(bounds, evals,
                                                                         tmp_path):
  with pytest.raises(ValueError, match="counter: (boundaries|evaluation steps)"):
    engine.run(Counter(tmp_path, bounds=bounds, evals=evals), tmp_path)
  assert not (tmp_path / workdir.METRICS_FILE).exists()
