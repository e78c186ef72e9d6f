"""TensorBoard event files of a run's headline measurements, written by engine callbacks.

With config.log.tensorboard a study trains its programs with the callbacks `writing` gives: at
every evaluation, each record's headline measurements (`engine.Program.headline`) are written as
scalars at the record's step into the event directory of its model, `<directory>/<name>/`, one
TensorBoard run per grid cell or ensemble member, named from its grid values (`run_names`:
`width=8,frequency=0.01,seed=0`). The events are written without TensorFlow, by tensorboardX's
synchronous EventsWriter (no background thread, so a flush puts every event on disk): each
invocation of a program opens one event file per model at its first evaluation, flushes it
after every evaluation (a live TensorBoard follows the run) and closes it at the program's end.

Resume: the first event of a file opened by an invocation whose first trained step is s is a
SessionLog START at s (what tensorboardX's SummaryWriter(purge_step=s) writes), which makes
TensorBoard drop the model's events at steps >= s from its earlier files: the evaluations that a
killed run wrote after its last checkpoint, written again now. A finished program measured again
(nothing trained) writes nothing. None and non-finite values (a diverged model's NaN) are left
out: a diverged model's curves end at its last finite point. Only process 0 writes.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rare_tasks.core import disk, engine, workdir

if TYPE_CHECKING:
  from tensorboardX.proto.event_pb2 import Event

# The work directory's folder of event files (a study's declared file).
DIR = "tensorboard"
# Characters a run name keeps; any other becomes "_".
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,-]")


def value_text(v: Any) -> str:
  """A grid value in a run name: a float as Python's shortest repr (0.01, 1e-05), a list or
  tuple its items joined by '+' ('none' when empty)."""
  if isinstance(v, (list, tuple)):
    return "+".join(value_text(x) for x in v) or "none"
  return repr(v) if isinstance(v, float) else str(v)


def run_names(models: Sequence[Mapping[str, Any]], always: Sequence[str],
              others: Sequence[str] = (), rename: Mapping[str, str] | None = None) -> list[str]:
  """Each model's run directory name from its grid values: 'name=value' of its `always` fields,
  then of the `others` whose value differs between the models, joined by ',', each field named
  as `rename` says (default its own name); filesystem-safe (no '/' or space: any character but
  letters, digits and ._+=,- becomes '_'). ValueError when two models get one name."""
  rename = rename or {}
  varied = [k for k in others if len({value_text(m[k]) for m in models}) > 1]
  names = [_UNSAFE.sub("_", ",".join(f"{rename.get(k, k)}={value_text(m[k])}"
                                     for k in (*always, *varied))) for m in models]
  if len(set(names)) < len(names):
    raise ValueError(f"TensorBoard run names {names}: allowed: one per model (name the fields "
                     "that tell the models apart)")
  return names


@functools.cache
def _tensorboardx() -> types.SimpleNamespace:
  """tensorboardX's writer and protocol buffers, imported on first use: importing tensorboardX
  imports torch where torch is installed (1.1 s measured), which no run without TensorBoard
  should pay at start-up."""
  from tensorboardX.event_file_writer import EventsWriter
  from tensorboardX.proto.event_pb2 import Event, SessionLog
  from tensorboardX.proto.summary_pb2 import Summary

  return types.SimpleNamespace(EventsWriter=EventsWriter, Event=Event, SessionLog=SessionLog,
                               Summary=Summary)


def is_scalar(v: Any) -> bool:
  """Whether a record's value is one number (an int or a float, not a bool): a scalar."""
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def headline_event(step: int, scalars: Mapping[str, Any], wall_time: float) -> Event | None:
  """The Event of a record's scalars at `step`: every finite number by tag, None and non-finite
  values left out; None when none is left."""
  tbx = _tensorboardx()
  values = [tbx.Summary.Value(tag=tag, simple_value=float(v)) for tag, v in scalars.items()
            if v is not None and math.isfinite(v)]
  if not values:
    return None
  return tbx.Event(wall_time=wall_time, step=int(step), summary=tbx.Summary(value=values))


class _Run:
  """The event file of one model opened by this invocation, in its run directory."""

  def __init__(self, path: Path, purge_step: int):
    self.path = path
    with disk.writing(path):
      path.mkdir(parents=True, exist_ok=True)
      # The nanoseconds tell apart (and order) two files opened within one second.
      tbx = _tensorboardx()
      self.writer = tbx.EventsWriter(str(path / "events"), f".{time.time_ns()}")
      self.writer.write_event(tbx.Event(wall_time=time.time(), step=purge_step,
                                        session_log=tbx.SessionLog(status=tbx.SessionLog.START)))

  def write(self, event: Event) -> None:
    with disk.writing(self.path):
      self.writer.write_event(event)

  def flush(self) -> None:
    with disk.writing(self.path):
      self.writer.flush()

  def close(self) -> None:
    with disk.writing(self.path):
      self.writer.close()


class TensorBoard:
  """The event files of the programs trained with its `callbacks` (one program at a time, as
  the engine trains them): runs `directory/<name_of(record)>/`. `close` closes whatever is
  still open (a program stopped by an error or a stop request)."""

  def __init__(self, directory: str | Path, name_of: Callable[[dict], str]):
    self.directory, self.name_of = Path(directory), name_of
    self._program: Any = None
    self._purge_step = 0
    self._runs: dict[str, _Run] = {}

  @property
  def callbacks(self) -> tuple[engine.Callback, engine.Callback]:
    """The engine callbacks: write at every evaluation, close at the program's end."""
    return (engine.Callback(self.evaluated, when="evaluation"),
            engine.Callback(self.ended, when="end"))

  def evaluated(self, event: engine.Event) -> None:
    """Writes the headline scalars of the evaluation's records, flushed to disk."""
    if not workdir.is_writer() or event.first_step > event.step:  # nothing was trained
      return
    if event.program is not self._program:
      self.close()
      self._program, self._purge_step = event.program, event.first_step
    now = time.time()
    for record in event.records or ():
      name = self.name_of(record)
      if name not in self._runs:  # opened even with nothing to write: its purge still counts
        self._runs[name] = _Run(self.directory / name, self._purge_step)
      written = headline_event(record["step"], event.program.headline(record), now)
      if written is not None:
        self._runs[name].write(written)
    for run in self._runs.values():
      run.flush()

  def ended(self, event: engine.Event) -> None:
    """Closes the program's event files."""
    if event.program is self._program:
      self.close()

  def close(self) -> None:
    """Closes every open event file."""
    runs, self._runs, self._program = self._runs, {}, None
    for run in runs.values():
      run.close()


@contextlib.contextmanager
def writing(enabled: bool, directory: str | Path,
            name_of: Callable[[dict], str]) -> Iterator[tuple[engine.Callback, ...]]:
  """The engine callbacks that write TensorBoard events under `directory` (nothing when not
  `enabled`, or on any process but 0); whatever is still open is closed when the block ends,
  however it ends. name_of(record): the run directory name of the record's model."""
  if not enabled or not workdir.is_writer():
    yield ()
    return
  board = TensorBoard(directory, name_of)
  try:
    yield board.callbacks
  finally:
    board.close()
