"""The training engine of every study: how a run resumes, the chunk loop, checkpoints, progress
and callbacks, for any program that can init, restore, train a chunk and evaluate.

A track supplies a `Program` (the synthetic track one per ensemble group, the language-model
track one per compiled ensemble of decoders); `run` trains it to its last step:
  - resume: a program with no checkpoint starts from `init` (and records step 0 when it asks
    to); one with a checkpoint restores it and goes on from that step; a finished one trains
    nothing, and measures its final step again from the last checkpoint when metrics.jsonl
    lost that record (a damaged file);
  - the chunk loop: one dispatch per chunk (`Program.boundaries`); at an evaluation step the
    evaluation is dispatched at once and its records are written while the next chunk trains,
    and at the latest before the next checkpoint (a checkpoint never runs ahead of the records
    it follows); checkpoints at evaluations at most every `checkpoint_interval_s` seconds and
    always at the end;
  - callbacks, registered with when they run: after every chunk, at the first chunk end at or
    past every multiple of N steps, when an evaluation's records are written (with the chunk
    outputs since the previous one: per-step measurements the scanned chunk traced), or once
    at the end of training;
  - faults: a checkpoint that cannot be restored is reported, set aside and the one before it
    used (none left: a fresh start, said so); a stop request (rare_tasks.core.interrupts)
    ends the loop after the chunk in flight with the records written and a checkpoint, the
    chunk outputs since the last evaluation saved beside it so that the resumed run's records
    equal an uninterrupted run's; a model that diverged since the last evaluation
    (rare_tasks.core.divergence, read from its records) is named in one line.
The loop forwards the arrays it is given without reading them: what a chunk returns and what an
evaluation measures are the program's to turn into records.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np

from rare_tasks.core import disk, divergence, interrupts, mesh, workdir
from rare_tasks.core.checkpoints import CheckpointDamaged, GroupCheckpoints
from rare_tasks.core.progress import Progress, log

WHEN = ("chunk", "every", "evaluation", "end")


class Program(Protocol):
  """What the engine trains. `name` names it in progress lines and callbacks; `steps` is its
  last step; `checkpoint_dir` is its checkpoints' folder inside the work directory;
  `measures_start`: a fresh start records an evaluation at step 0."""

  name: str
  steps: int
  checkpoint_dir: str
  measures_start: bool

  def boundaries(self) -> Sequence[int]:
    """The steps where a dispatch ends, ascending, the last one `steps`."""

  def evaluation_steps(self) -> Sequence[int]:
    """The boundaries at which the program is evaluated (and may be checkpointed)."""

  def init(self) -> Any:
    """The state of a fresh start."""

  def restore(self, checkpoints: GroupCheckpoints, step: int) -> Any:
    """The state at the checkpoint of `step` (raises CheckpointDamaged when it cannot)."""

  def start(self, step: int) -> None:
    """Called once before training from `step` (a fresh start is step 0)."""

  def train(self, state: Any, first_step: int, num_steps: int) -> tuple[Any, Any]:
    """Trains updates first_step .. first_step + num_steps - 1: -> (state, chunk outputs)."""

  def start_outputs(self, state: Any) -> Any:
    """The chunk outputs recorded with the step-0 evaluation (when measures_start)."""

  def evaluate(self, state: Any) -> Any:
    """The evaluation of a state, dispatched (read when its records are written)."""

  def records(self, step: int, outputs: Sequence[Any] | None, measured: Any) -> list[dict]:
    """The metrics.jsonl records of the evaluation at `step`; outputs: the chunk outputs since
    the previous evaluation (None when the end is measured again, after no training)."""

  def checkpoint(self, state: Any, step: int) -> Any:
    """The tree to save at `step`, or None where this process saves nothing."""

  def final_recorded(self) -> bool:
    """Whether metrics.jsonl holds the final record of every model of the program."""

  def describe(self, records: list[dict]) -> str:
    """A few words on the latest records for the progress line ('' for none)."""

  def label(self, record: dict) -> str:
    """The model a record is of, in words (its grid values)."""

  def headline(self, record: dict) -> dict[str, float]:
    """The record's headline measurements by name: TensorBoard's scalars
    (rare_tasks.core.tensorboard)."""


@dataclasses.dataclass(frozen=True)
class Event:
  """What a callback sees: the program, the step reached, and the first update since the
  previous event of the same callback (steps first_step .. step; the first update trained in
  this invocation for the first one). `outputs`: the chunk outputs of those steps, in order
  (for an evaluation: since the previous evaluation; None when a finished program's final
  evaluation is measured again, which trains nothing). `measured` and `records`: the
  evaluation and the records written (evaluation callbacks). `state`: after a chunk, the
  program's state (valid until the next chunk is dispatched)."""

  program: Any
  step: int
  first_step: int
  outputs: Sequence[Any] | None = None
  measured: Any = None
  records: list[dict] | None = None
  state: Any = None


@dataclasses.dataclass(frozen=True)
class Callback:
  """fn(event), run `when`: "chunk" (after every dispatch), "every" (after the first chunk that
  reaches or passes each multiple of `every` steps), "evaluation" (once an evaluation's records
  are written) or "end" (once the program has trained its last step)."""

  fn: Callable[[Event], None]
  when: str = "chunk"
  every: int = 0

  def __post_init__(self):
    if self.when not in WHEN:
      raise ValueError(f"Callback.when = {self.when!r}: allowed: one of {WHEN}")
    if (self.when == "every") != (self.every > 0):
      raise ValueError(f"Callback.every = {self.every!r}: allowed: > 0 exactly when "
                       "when = 'every'")


@dataclasses.dataclass
class _Evaluation:
  step: int
  first_step: int
  outputs: list[Any] | None
  measured: Any


def check_program(program: Program) -> None:
  """ValueError unless the program's boundaries are ascending, end at its last step, and
  include every evaluation step, the last step among them (else an evaluation would never be
  written, or a finished run never checkpointed)."""
  bounds, evals = list(program.boundaries()), list(program.evaluation_steps())
  if not bounds or bounds != sorted(set(bounds)) or bounds[0] <= 0 or bounds[-1] != program.steps:
    raise ValueError(f"{program.name}: boundaries {bounds}: allowed: ascending steps > 0 ending "
                     f"at the last step {program.steps}")
  if not set(evals) <= set(bounds) or program.steps not in evals:
    raise ValueError(f"{program.name}: evaluation steps {evals}: allowed: boundaries, the last "
                     f"step {program.steps} among them")


def concatenated(outputs: Sequence[Any]) -> Any:
  """Chunk outputs (trees of arrays with a leading steps axis) as one host tree, the chunks
  concatenated along that axis."""
  return jax.tree.map(lambda *chunks: np.concatenate(chunks), *mesh.host_copy(list(outputs)))


def run(program: Program, wd: Path, callbacks: Sequence[Callback] = (),
        progress: Progress | None = None, checkpoint_interval_s: float = 0.0) -> int:
  """Trains `program` in work directory `wd` from where it stopped to its last step; returns
  the steps it trained (0 for a finished program). A program is built lazily enough that a
  finished one, complete in metrics.jsonl, costs no compilation. Raises
  interrupts.Interrupted after a stop request, with its checkpoint written."""
  check_program(program)
  ckpt = GroupCheckpoints(Path(wd) / program.checkpoint_dir)
  try:
    if ckpt.latest_step() == program.steps and program.final_recorded():
      if progress is not None:
        progress.skip(program.name, program.steps)
      return 0
    resumed = _resume(program, ckpt)
    if resumed is not None and resumed[1] == program.steps:
      # Finished, but metrics.jsonl lost the final records (a damaged file): measure again.
      if progress is not None:
        progress.skip(program.name, program.steps)
      program.start(program.steps)
      _write(program, wd, callbacks, _Evaluation(program.steps, program.steps + 1, None,
                                                 program.evaluate(resumed[0])))
      log.info("%s: final measurements were missing; measured again from the checkpoint",
               program.name)
      return 0
    if resumed is None:
      state, step, held = program.init(), 0, _Held(1, [])
      program.start(0)
      if program.measures_start:
        _write(program, wd, callbacks, _Evaluation(0, 0, [program.start_outputs(state)],
                                                   program.evaluate(state)))
    else:
      state, step, held = resumed
      program.start(step)
      if progress is not None:
        progress.skip(program.name, step)
      log.info("%s: resuming from the checkpoint at step %d", program.name, step)
    return _Loop(program, wd, ckpt, callbacks, progress, checkpoint_interval_s).run(
        state, step, held)
  finally:
    ckpt.close()


@dataclasses.dataclass
class _Held:
  """The chunk outputs since the last evaluation: its first step after it, and the outputs."""

  since: int
  outputs: list[Any]


def _outputs_file(ckpt: GroupCheckpoints, step: int) -> Path:
  return ckpt.directory / f"outputs-{step}.pkl"


def _resume(program: Program, ckpt: GroupCheckpoints) -> tuple[Any, int, _Held] | None:
  """(state, step, outputs held since the last evaluation) of the newest checkpoint that
  restores, or None for none. A damaged one is reported and set aside, never deleted."""
  steps = ckpt.steps()
  for i, step in enumerate(steps):
    try:
      state = program.restore(ckpt, step)
      held = _Held(step + 1, [])
      if step not in program.evaluation_steps() and step != program.steps:
        saved = workdir.read_pickle(_outputs_file(ckpt, step))
        if not isinstance(saved, dict):
          raise CheckpointDamaged(f"step {step} cannot be restored: the chunk outputs saved "
                                  "with it are missing")
        held = _Held(saved["since"], saved["outputs"])
      return state, step, held
    except CheckpointDamaged as e:
      where = ckpt.set_aside(step)
      then = (f"using the one at step {steps[i + 1]}" if i + 1 < len(steps)
              else "none is left: starting from scratch")
      log.warning("%s: the checkpoint at %s; moved to %s; %s", program.name, e, where, then)
  return None


class _Loop:
  """The chunk loop of one program from a step to the end."""

  def __init__(self, program: Program, wd: Path, ckpt: GroupCheckpoints,
               callbacks: Sequence[Callback], progress: Progress | None,
               checkpoint_interval_s: float):
    self.program, self.wd, self.ckpt, self.callbacks = program, wd, ckpt, callbacks
    self.progress, self.interval = progress, checkpoint_interval_s
    self.evals = set(program.evaluation_steps())
    self.last_save = time.perf_counter()
    self.pending: _Evaluation | None = None
    self.saved_at = -1

  def run(self, state: Any, step: int, held: _Held) -> int:
    """Trains from `step` to the end; returns the steps trained."""
    program, first = self.program, step
    if self.progress is not None:
      self.progress.start(program.name)
    # Per "every" callback: the first step since it last ran, and the outputs since then.
    every = {i: (step + 1, []) for i, c in enumerate(self.callbacks) if c.when == "every"}
    for bound in [b for b in program.boundaries() if b > step]:
      num = bound - step
      state, out = program.train(state, step, num)
      held.outputs.append(out)
      if bound in self.evals:
        held = self._evaluated(state, bound, held)
      if self.progress is not None:
        self.progress.advance(program.name, bound, num)
      previous, step = step, bound
      self._chunk_callbacks(every, state, previous, bound, out)
      # At the last step the run is done: a request then stops nothing.
      signum = interrupts.stop_requested() if bound < program.steps else None
      if signum is not None:
        if self.saved_at != bound:
          self._save(state, bound, None if bound in self.evals else held)
        raise interrupts.Interrupted(signum, program.name, bound)
    for c in self.callbacks:
      if c.when == "end":
        c.fn(Event(program, step, first + 1))
    return step - first

  def _evaluated(self, state: Any, bound: int, held: _Held) -> _Held:
    """Dispatches the evaluation at `bound`, writes the previous one, and checkpoints when
    due; -> the outputs held from here (none)."""
    measured = self.program.evaluate(state)
    if self.pending is not None:  # written while this chunk runs
      _write(self.program, self.wd, self.callbacks, self.pending)
    self.pending = _Evaluation(bound, held.since, held.outputs, measured)
    if bound == self.program.steps or time.perf_counter() - self.last_save >= self.interval:
      self._save(state, bound, None)
    return _Held(bound + 1, [])

  def _save(self, state: Any, bound: int, held: _Held | None) -> None:
    """Writes the pending records, then a checkpoint at `bound` (with the outputs held since
    the last evaluation when `bound` is not one)."""
    if self.pending is not None:
      _write(self.program, self.wd, self.callbacks, self.pending)
      self.pending = None
    if held is not None:
      host = mesh.host_copy(held.outputs)
      path = _outputs_file(self.ckpt, bound)
      with disk.writing(path):
        workdir.write_bytes(path, pickle.dumps({"since": held.since, "outputs": host}))
    tree = self.program.checkpoint(state, bound)
    if tree is not None:
      self.ckpt.save(bound, tree)
    self.saved_at = bound
    if workdir.is_writer():  # the outputs of steps orbax no longer keeps
      kept = {_outputs_file(self.ckpt, s) for s in self.ckpt.steps()}
      for old in set(self.ckpt.directory.glob("outputs-*.pkl")) - kept:
        old.unlink(missing_ok=True)
    self.last_save = time.perf_counter()

  def _chunk_callbacks(self, every: dict[int, tuple[int, list]], state: Any, previous: int,
                       bound: int, out: Any) -> None:
    for i, c in enumerate(self.callbacks):
      if c.when == "chunk":
        c.fn(Event(self.program, bound, previous + 1, [out], state=state))
      elif c.when == "every":
        since, seen = every[i]
        seen.append(out)
        if bound // c.every > previous // c.every:
          c.fn(Event(self.program, bound, since, seen, state=state))
          every[i] = (bound + 1, [])


def _write(program: Program, wd: Path, callbacks: Sequence[Callback],
           evaluation: _Evaluation) -> None:
  """Appends an evaluation's records with a progress line, names the models that diverged
  since the previous evaluation, and runs the evaluation callbacks."""
  records = program.records(evaluation.step, evaluation.outputs, evaluation.measured)
  workdir.append_metrics(wd, records)
  note = program.describe(records)
  if note:
    log.info("%s step %d/%d | %s", program.name, evaluation.step, program.steps, note)
  for r in records:
    at = r.get(divergence.FIELD)
    if at is not None and evaluation.first_step <= at <= evaluation.step:
      log.warning("%s: %s diverged at step %d (a loss that is not finite): frozen there, "
                  "its later measurements recorded as NaN", program.name, program.label(r), at)
  for c in callbacks:
    if c.when == "evaluation":
      c.fn(Event(program, evaluation.step, evaluation.first_step, evaluation.outputs,
                 evaluation.measured, records))
