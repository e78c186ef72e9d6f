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
    at the end of training.
The loop forwards the arrays it is given without reading them: what a chunk returns and what an
evaluation measures are the program's to turn into records.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np

from rare_tasks.core import workdir
from rare_tasks.core.checkpoints import GroupCheckpoints
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

  def restore(self, checkpoints: GroupCheckpoints) -> Any:
    """The state at the latest checkpoint."""

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
  return jax.tree.map(lambda *chunks: np.concatenate([np.asarray(c) for c in chunks]),
                      *[jax.device_get(o) for o in outputs])


def run(program: Program, wd: Path, callbacks: Sequence[Callback] = (),
        progress: Progress | None = None, checkpoint_interval_s: float = 0.0) -> int:
  """Trains `program` in work directory `wd` from where it stopped to its last step; returns
  the steps it trained (0 for a finished program). A program is built lazily enough that a
  finished one, complete in metrics.jsonl, costs no compilation."""
  check_program(program)
  ckpt = GroupCheckpoints(Path(wd) / program.checkpoint_dir)
  try:
    latest = ckpt.latest_step()
    if latest == program.steps:
      if progress is not None:
        progress.skip(program.name, program.steps)
      if not program.final_recorded():
        state = program.restore(ckpt)
        program.start(program.steps)
        _write(program, wd, callbacks, _Evaluation(program.steps, program.steps + 1, None,
                                                   program.evaluate(state)))
        log.info("%s: final measurements were missing; measured again from the checkpoint",
                 program.name)
      return 0
    if latest is None:
      state, step = program.init(), 0
      program.start(0)
      if program.measures_start:
        _write(program, wd, callbacks, _Evaluation(0, 0, [program.start_outputs(state)],
                                                   program.evaluate(state)))
    else:
      state, step = program.restore(ckpt), int(latest)
      program.start(step)
      if progress is not None:
        progress.skip(program.name, step)
      log.info("%s: resuming from the checkpoint at step %d", program.name, step)
    return _loop(program, wd, ckpt, state, step, callbacks, progress, checkpoint_interval_s)
  finally:
    ckpt.close()


def _loop(program: Program, wd: Path, ckpt: GroupCheckpoints, state: Any, step: int,
          callbacks: Sequence[Callback], progress: Progress | None,
          checkpoint_interval_s: float) -> int:
  """The chunk loop from `step` to the end; returns the steps it trained."""
  first, evals = step, set(program.evaluation_steps())
  if progress is not None:
    progress.start(program.name)
  last_save = time.perf_counter()
  pending: _Evaluation | None = None
  outputs: list[Any] = []
  since_eval = step + 1
  # Per "every" callback: the first step since it last ran, and the outputs since then.
  every = {i: (step + 1, []) for i, c in enumerate(callbacks) if c.when == "every"}
  for bound in [b for b in program.boundaries() if b > step]:
    num = bound - step
    state, out = program.train(state, step, num)
    outputs.append(out)
    if bound in evals:
      measured = program.evaluate(state)
      if pending is not None:  # written while this chunk runs
        _write(program, wd, callbacks, pending)
      pending = _Evaluation(bound, since_eval, outputs, measured)
      outputs, since_eval = [], bound + 1
      if bound == program.steps or time.perf_counter() - last_save >= checkpoint_interval_s:
        _write(program, wd, callbacks, pending)
        pending = None
        tree = program.checkpoint(state, bound)
        if tree is not None:
          ckpt.save(bound, tree)
        last_save = time.perf_counter()
    if progress is not None:
      progress.advance(program.name, bound, num)
    previous, step = step, bound
    for i, c in enumerate(callbacks):
      if c.when == "chunk":
        c.fn(Event(program, bound, previous + 1, [out], state=state))
      elif c.when == "every":
        since, seen = every[i]
        seen.append(out)
        if bound // c.every > previous // c.every:
          c.fn(Event(program, bound, since, seen, state=state))
          every[i] = (bound + 1, [])
  for c in callbacks:
    if c.when == "end":
      c.fn(Event(program, step, first + 1))
  return step - first


def _write(program: Program, wd: Path, callbacks: Sequence[Callback],
           evaluation: _Evaluation) -> None:
  """Appends an evaluation's records with a progress line, and runs the evaluation
  callbacks."""
  records = program.records(evaluation.step, evaluation.outputs, evaluation.measured)
  workdir.append_metrics(wd, records)
  note = program.describe(records)
  if note:
    log.info("%s step %d/%d | %s", program.name, evaluation.step, program.steps, note)
  for c in callbacks:
    if c.when == "evaluation":
      c.fn(Event(program, evaluation.step, evaluation.first_step, evaluation.outputs,
                 evaluation.measured, records))
