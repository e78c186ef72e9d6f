"""The engine's program of one ensemble of decoders trained on a text source
(`rare_tasks.core.engine`), for every language-model study.

A chunk of `train.steps_per_dispatch` updates is one dispatch of the trainer's scanned step, its
batches read from the source (generated on the device, or cut from the real-text cache) and,
when an `Inputs` is given, each member's injected rows. Every `eval_every` steps each member's
validation loss is measured, with whatever `Measurement`s the study adds (the injection study's
task evaluation); the records hold, per member, its identity fields, the training since the
last record (train loss, z-loss, gradient norm), the learning rate, throughput and each
measurement's values. Checkpoints hold the state and the data position on every process,
restored onto the current mesh, so a run resumes on another device count.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import jax
import ml_collections
import numpy as np

from rare_tasks.core import divergence, engine, tensorboard, workdir
from rare_tasks.core.checkpoints import GroupCheckpoints
from rare_tasks.core.steps import chunk_bounds, eval_steps
from rare_tasks.lm import data, sharding
from rare_tasks.lm.model import Params
from rare_tasks.lm.trainer import State, Trainer

# Record fields that are bookkeeping, not measurements: left out of TensorBoard's scalars.
NOT_HEADLINE = ("step", "tokens", "model_tokens_per_s", "trace_first", divergence.FIELD)


class Inputs(Protocol):
  """Per-member rows a study injects into the shared text batches."""

  def start(self, step: int) -> None:
    """Training (re)starts at `step`: forget whatever was planned from there on."""

  def rows(self, first_step: int, num_steps: int) -> jax.Array | None:
    """The injected rows of these updates (k, P, B, H), or None where nothing is injected."""

  def record(self, member: int, step: int) -> dict[str, Any]:
    """What the member's record at `step` says of its injections."""


class Measurement(Protocol):
  """An evaluation a study adds to the validation loss."""

  def measure(self, trainer: Trainer, state: State) -> Any:
    """Dispatched at an evaluation; read when the records are written."""

  def record(self, member: int, measured: Any) -> dict[str, Any]:
    """The member's values, from the host copy of what `measure` returned."""


class Trace(Protocol):
  """Per-update measurements the scanned chunk traces beside the training losses."""

  def arrays(self) -> tuple[jax.Array, jax.Array]:
    """What the chunk measures after every update: prefixes (tasks, n, L), labels (tasks, n)."""

  def record(self, member: int, first: int, traced: np.ndarray | None) -> dict[str, Any]:
    """What the member's record says of its traced values (k, tasks): row i read after
    first + i updates (None after a re-measured end, which trained nothing)."""


class TextProgram:
  """An ensemble of decoders of one resolved config on one text source, as the engine's program.

  members: each member's identity fields in its records (the first key of `metrics_key` among
  them); seeds: the members' init seeds, or init_params for every member; checkpoint_dir: its
  folder inside the work directory.
  """

  measures_start = False

  def __init__(self, name: str, c: ml_collections.ConfigDict, wd: Path,
               source: data.TextSource, trainer: Trainer, members: Sequence[dict[str, Any]],
               seeds: Sequence[int], metrics_key: tuple[str, str], checkpoint_dir: str,
               init_params: Params | None = None, inputs: Inputs | None = None,
               measurements: Sequence[Measurement] = (), trace: Trace | None = None,
               extra_boundaries: Sequence[int] = ()):
    self.name, self.c, self.wd, self.source, self.trainer = name, c, wd, source, trainer
    self.members, self.seeds, self.metrics_key = list(members), tuple(seeds), metrics_key
    self.checkpoint_dir, self.init_params = checkpoint_dir, init_params
    self.inputs, self.measurements, self.trace = inputs, tuple(measurements), trace
    self.extra_boundaries = tuple(int(b) for b in extra_boundaries)
    self.steps = c.train.steps
    mesh = trainer.mesh
    self.batch_sharding = sharding.batch_sharding(mesh, leading=1)
    self.rows_per_eval = rows_per_eval(c.data.validation_rows, c.train.batch_size,
                                       sharding.batch_split(mesh))
    self.tokens_per_step = c.train.batch_size * c.data.seq_len
    self.floor = source.loss_floor()
    self._clock = (time.perf_counter(), 0)

  @functools.cached_property
  def val_rows(self) -> jax.Array:
    """The validation rows on the devices (made on first use: a finished program needs none)."""
    return self.source.validation(self.c.data.validation_rows,
                                  sharding.batch_sharding(self.trainer.mesh))

  def boundaries(self) -> list[int]:
    """The evaluations, every steps_per_dispatch steps, and the extra boundaries (the steps
    before updates a callback measures)."""
    bounds = chunk_bounds(self.steps, self.c.eval_every, self.c.train.steps_per_dispatch)
    return sorted(set(bounds) | {b for b in self.extra_boundaries if 0 < b < self.steps})

  def evaluation_steps(self) -> list[int]:
    return eval_steps(self.steps, self.c.eval_every)

  def init(self) -> State:
    if self.init_params is not None:
      return self.trainer.start_from(self.init_params)
    return self.trainer.init(np.asarray(self.seeds))

  def restore(self, checkpoints: GroupCheckpoints, step: int) -> State:
    return restore(checkpoints, self.trainer, step)

  def start(self, step: int) -> None:
    self._clock = (time.perf_counter(), step)
    if self.inputs is not None:
      self.inputs.start(step)

  def train(self, state: State, first_step: int, num_steps: int):
    """-> (state, {"ce", "z_loss", "grad_norm"}: (k, P) per step)."""
    batches = self.source.train_batches(first_step, num_steps, self.c.train.batch_size,
                                        self.batch_sharding)
    rows = None if self.inputs is None else self.inputs.rows(first_step, num_steps)
    trace = None if self.trace is None else self.trace.arrays()
    return self.trainer.chunk(state, batches, rows, trace, first_step)

  def start_outputs(self, state: State) -> None:
    del state

  def evaluate(self, state: State) -> tuple[jax.Array, list[Any], jax.Array]:
    """Each member's validation loss (P,), every measurement's arrays, and each member's
    diverged step (P,)."""
    val = self.trainer.evaluate(state, self.val_rows, self.rows_per_eval)
    return (val, [m.measure(self.trainer, state) for m in self.measurements],
            self.trainer.diverged(state))

  def checkpoint(self, state: State, step: int) -> dict[str, Any]:
    return {"state": state, "data_position": np.asarray(step)}

  def final_recorded(self) -> bool:
    key = self.metrics_key[0]
    done = {r[key] for r in workdir.read_metrics(self.wd, self.metrics_key)
            if r["step"] == self.steps}
    return all(m[key] in done for m in self.members)

  def label(self, record: dict) -> str:
    key = self.metrics_key[0]
    member = next((m for m in self.members if m[key] == record.get(key)), {key: record.get(key)})
    return ", ".join(f"{k}={v}" for k, v in member.items())

  def headline(self, record: dict) -> dict[str, float]:
    """TensorBoard's scalars of a record: its numbers by field (the train, z- and validation
    losses, the gap to the floor, the gradient norm, the learning rate, the throughput, and
    every measurement's, such as the injection study's per-task losses and accuracies); the
    member's identity fields, bookkeeping (NOT_HEADLINE), lists and None left out."""
    identity = {k for m in self.members for k in m}
    return {k: float(v) for k, v in record.items()
            if k not in identity and k not in NOT_HEADLINE
            and tensorboard.is_scalar(v)}

  def describe(self, records: list[dict]) -> str:
    if not records:
      return ""
    losses = " ".join(f"{r['val_loss']:.3f}" for r in records)
    return (f"val loss {losses} | {records[0]['tokens_per_s']:.3g} tokens/s "
            f"(x{len(records)} members)")

  def records(self, step: int, outputs: Sequence[dict[str, jax.Array]] | None,
              measured: tuple[jax.Array, list[Any]]) -> list[dict[str, Any]]:
    """One record per member: its identity, its losses at `step`, the training since the last
    record (None after a re-measured end, which trained nothing) and the measurements."""
    val, extra, diverged = jax.device_get(measured)
    now, (then, since) = time.perf_counter(), self._clock
    self._clock = (now, step)
    rate = (step - since) * self.tokens_per_step / max(now - then, 1e-9)
    host = None if not outputs else engine.concatenated(outputs)
    out = []
    for m, identity in enumerate(self.members):
      r = dict(identity) | self._member_record(m, step, host, np.asarray(val), rate)
      r[divergence.FIELD] = divergence.step_of(diverged[m])
      if self.inputs is not None:
        r.update(self.inputs.record(m, step))
      measured_here: dict[str, Any] = {}
      for measurement, values in zip(self.measurements, extra):
        measured_here.update(measurement.record(m, values))
      if self.trace is not None:
        traced = None if host is None else host["task_trace"][:, m]
        measured_here.update(self.trace.record(
            m, step - (0 if traced is None else len(traced)) + 1, traced))
      if r[divergence.FIELD] is not None:
        measured_here = divergence.nan_measurements(measured_here)
      out.append(r | measured_here)
    return out

  def _member_record(self, m: int, step: int, host: dict[str, np.ndarray] | None,
                     val: np.ndarray, rate: float) -> dict[str, Any]:
    """What every study records of member m at `step`: tokens, validation loss and its gap
    to the floor, speed, learning rate, and the training since the last record."""
    r = {"step": int(step), "tokens": int(step * self.tokens_per_step),
         "val_loss": float(val[m]), "tokens_per_s": rate,
         "model_tokens_per_s": rate * len(self.members),
         "learning_rate": float(self.trainer.learning_rate(step - 1))}
    r["val_gap"] = None if self.floor is None else r["val_loss"] - self.floor
    if host is None:
      r.update(train_loss=None, train_z_loss=None, grad_norm=None)
    else:
      r.update(train_loss=float(np.mean(host["ce"][:, m])),
               train_z_loss=float(np.mean(host["z_loss"][:, m])),
               grad_norm=float(host["grad_norm"][-1, m]))
    return r


def restore(checkpoints: GroupCheckpoints, trainer: Trainer, step: int | None = None) -> State:
  """The trainer's state at the checkpoint of `step` (default the latest), on the trainer's
  mesh; a checkpoint written before divergence was tracked has every member training."""
  step = checkpoints.latest_step() if step is None else step
  like = {"state": trainer.abstract_state, "data_position": np.zeros((), np.int64)}
  restored = checkpoints.restore(like, step)
  assert int(restored["data_position"]) == step
  state = restored["state"]
  if "diverged" not in state:
    state["diverged"] = jax.device_put(
        np.full((trainer.num_members,), divergence.NOT_DIVERGED, np.int32),
        trainer.state_sharding["diverged"])
  return state


def rows_per_eval(rows: int, batch_size: int, split: int) -> int:
  """Validation rows per evaluated batch: at most the training batch, a divisor of `rows`
  that the mesh splits evenly."""
  best = split
  for n in range(split, min(rows, batch_size) + 1, split):
    if rows % n == 0:
      best = n
  return best
