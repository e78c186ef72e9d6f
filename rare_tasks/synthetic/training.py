"""Training groups of cells: each group one compiled ensemble program for the engine
(`rare_tasks.core.engine`), padded and sharded over a mesh, with its records and checkpoints.

A group (cells of one shape) is one compiled ensemble, trained `eval_every` steps per dispatch;
step 0 is measured too. Every evaluation's measurements go to metrics.jsonl (written by process
0 of a multi-process run, every process gathering the measurements of its devices); checkpoints
hold the unpadded state as host arrays, gathered on every process and saved by all of them
together (orbax writes host arrays once), so a run resumes on any device or process count. The
per-step rare trace (measure.trace_rare) is an output of the scanned chunk that an evaluation
callback writes to traces/. The program forwards the arrays the task family measures
(`TaskFamily.finish_metrics`, `finish_trace`) without reading them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rare_tasks.core import divergence, engine, tensorboard, traces, workdir
from rare_tasks.core import mesh as meshes
from rare_tasks.core.checkpoints import GroupCheckpoints
from rare_tasks.core.progress import Progress
from rare_tasks.core.steps import eval_steps
from rare_tasks.synthetic import ensemble, placement
from rare_tasks.synthetic.grid import Cell, Group
from rare_tasks.synthetic.models import model_of
from rare_tasks.synthetic.tasks import TaskFamily

CHECKPOINTS_DIR = "checkpoints"
# What training writes into a work directory.
FILES = (CHECKPOINTS_DIR, traces.TRACES_DIR)


def train_spec_of(config: ml_collections.ConfigDict) -> ensemble.TrainSpec:
  t = config.train
  return ensemble.TrainSpec(
      steps=t.steps, batch_size=t.batch_size, optimizer=t.optimizer, schedule=t.schedule,
      warmup_steps=t.warmup_steps, final_lr_fraction=t.final_lr_fraction, momentum=t.momentum,
      eval_samples=config.eval_samples, injection=config.injection.schedule,
      withhold_steps=config.injection.withhold_steps, rng=t.rng)


def measure_spec_of(config: ml_collections.ConfigDict) -> ensemble.MeasureSpec:
  m = config.measure
  return ensemble.MeasureSpec(allocation=m.allocation, interference=m.interference,
                              interference_samples=m.interference_samples,
                              trace_rare=m.trace_rare)


def spec_of(config: ml_collections.ConfigDict, group: Group,
            task: TaskFamily) -> ensemble.EnsembleSpec:
  """Everything static about training `group`."""
  return ensemble.EnsembleSpec(model_of(config.model.name, group.static, task), task,
                               train_spec_of(config), measure_spec_of(config))


def group_constants(task: TaskFamily, rows: Sequence[Sequence[Cell]]) -> ensemble.Constants:
  """Host constants of cells laid out rows[stream][member] (unpadded)."""
  seeds = np.array([r[0].values["seed"] for r in rows])
  per_stream = [task.stream_constants(r[0].values) for r in rows]
  streams = {k: np.stack([c[k] for c in per_stream]) for k in per_stream[0]}
  mixtures = np.array([[c.mixture for c in r] for r in rows])
  rates = np.array([[c.values["learning_rate"] for c in r] for r in rows])
  gaps = np.array([[c.values["gap"] for c in r] for r in rows])
  bursts = np.array([[c.burst_size for c in r] for r in rows])
  return ensemble.make_constants(task, seeds, streams, mixtures, rates, gaps, bursts)


class GroupRun:
  """The engine's program of one group: device arrays and compiled programs, padded and
  sharded over a mesh. `measured`: the cells whose final record metrics.jsonl holds."""

  measures_start = True

  def __init__(self, config: ml_collections.ConfigDict, group: Group, task: TaskFamily, mesh,
               measured: Collection[int] = ()):
    self.group = group
    self.task = task
    self.name, self.steps = group.name, config.train.steps
    self.checkpoint_dir = f"{CHECKPOINTS_DIR}/{group.name}"
    self._evals = eval_steps(config.train.steps, config.eval_every)
    self._measured = measured
    self.spec = spec_of(config, group, task)
    s, p = group.num_streams, group.num_members
    self.axis, self.s_pad, self.p_pad = placement.choose_layout(s, p, mesh.devices.size)
    self._mesh = mesh
    self._ens = placement.ensemble_sharding(mesh, self.axis)
    self._rep = meshes.replicated(mesh)
    self._chunks: dict[int, Any] = {}
    self._eval = jax.jit(partial(ensemble.evaluate, self.spec), out_shardings=self._ens)
    self._trace = jax.jit(partial(ensemble.rare_trace, self.spec))

  # Built on first use, so that a finished group re-reported computes and traces nothing.
  @cached_property
  def host_consts(self) -> ensemble.Constants:
    """The group's constants on the host, unpadded."""
    return group_constants(self.task, self.group.cells)

  @cached_property
  def consts(self) -> ensemble.Constants:
    """The constants padded and placed: per stream, per member, or replicated."""
    consts = dict(self.host_consts)
    per_member = ("mixture", "learning_rate", "gap", "burst_size")
    consts["seeds"] = placement.pad_leading(consts["seeds"], self.s_pad)
    consts["stream"] = {k: placement.pad_leading(v, self.s_pad)
                        for k, v in consts["stream"].items()}
    for name in per_member:
      consts[name] = placement.pad_leading(consts[name], self.s_pad, self.p_pad)
    per_stream = placement.stream_sharding(self._mesh, self.axis)
    shardings = dict(seeds=per_stream, stream=per_stream, shared=self._rep,
                     **{name: self._ens for name in per_member})
    return {k: jax.device_put(v, shardings[k]) for k, v in consts.items()}

  @cached_property
  def _init_fn(self) -> Callable[..., Any]:
    return partial(ensemble.init_state, self.spec, num_members=self.p_pad)

  @cached_property
  def _abstract_state(self) -> Any:
    """The padded state's shapes and dtypes (init traced once)."""
    return jax.eval_shape(self._init_fn, self.consts)

  @cached_property
  def state_sharding(self) -> Any:
    return jax.tree.map(lambda a: self._ens if a.ndim >= 2 else self._rep, self._abstract_state)

  @cached_property
  def _init(self) -> Callable[..., Any]:
    return jax.jit(self._init_fn, out_shardings=self.state_sharding)

  # -- the engine's program ------------------------------------------------------------------

  def boundaries(self) -> list[int]:
    return self._evals

  def evaluation_steps(self) -> list[int]:
    return self._evals

  def init(self):
    return self._init(self.consts)

  def restore(self, checkpoints: GroupCheckpoints, step: int):
    host = checkpoints.restore(self.host_like(), step)
    # A checkpoint written before divergence was tracked: every member was still training.
    host.setdefault("diverged", np.full((self.group.num_streams, self.group.num_members),
                                        divergence.NOT_DIVERGED, np.int32))
    return self.from_host(host)

  def start(self, step: int) -> None:
    del step

  def train(self, state, first_step: int, num_steps: int):
    """-> (state, (mean loss (S, P), per-step rare trace or None))."""
    del first_step
    state, loss, trace = self.chunk(state, num_steps)
    return state, (loss, trace)

  def start_outputs(self, state):
    return None, (self.initial_trace(state) if self.spec.measure.trace_rare else None)

  def checkpoint(self, state, step: int):
    """The unpadded state as host arrays, on every process: all take part in orbax's save,
    which writes host arrays once."""
    del step
    return self.to_host(state)

  def final_recorded(self) -> bool:
    return all(c.index in self._measured for c in self.group.flat_cells())

  def describe(self, records: list[dict]) -> str:
    del records
    return ""

  def label(self, record: dict) -> str:
    return next(c.label for c in self.group.flat_cells() if c.index == record["cell"])

  def headline(self, record: dict) -> dict[str, float]:
    """TensorBoard's scalars of a record: the train loss and every measurement, a per-task
    vector (K,) split per task (fvu/task_0, .., the rare ones fvu/task_<k>_rare); the cell's
    grid values, other shapes (the K x K cosines) and None left out."""
    skip = {"cell", "step", "group", divergence.FIELD, *self.group.cells[0][0].record}
    rare, out = set(self.task.rare_tasks), {}
    for name, v in record.items():
      if name in skip:
        continue
      if tensorboard.is_scalar(v):
        out[name] = float(v)
      elif isinstance(v, list) and len(v) == self.task.num_tasks:
        out.update({f"{name}/task_{k}{'_rare' if k in rare else ''}": float(x)
                    for k, x in enumerate(v) if tensorboard.is_scalar(x)})
    return out

  # -- compiled programs and host copies -----------------------------------------------------

  def chunk(self, state, num_steps: int):
    """Trains num_steps: -> (state, mean loss (S, P), per-step rare trace or None)."""
    if num_steps not in self._chunks:
      outs = (self.state_sharding, self._ens)
      if self.spec.measure.trace_rare:
        # Trace leaves carry a leading steps axis before (S, P).
        outs += (placement.ensemble_sharding(self._ens.mesh, self.axis + 1),)
      self._chunks[num_steps] = jax.jit(
          partial(ensemble.train_chunk, self.spec, num_steps=num_steps), donate_argnums=0,
          out_shardings=outs)
    out = self._chunks[num_steps](state, self.consts)
    return out if len(out) == 3 else (*out, None)

  def evaluate(self, state):
    """-> (the measurements, leaves (S, P, ...), NaN for diverged members; diverged (S, P))."""
    # A copy: the next chunk donates the state before these are read.
    return self._eval(state, self.consts), jnp.copy(state["diverged"])

  def initial_trace(self, state):
    """The rare trace of a state, with a leading steps axis of one."""
    return jax.tree.map(lambda a: a[None], self._trace(state["params"], self.consts))

  def _unpad(self, tree: Any, lead: int = 0) -> Any:
    """Host copy of the real cells: leaves sliced to (S, P) after `lead` leading axes."""
    s, p = self.group.num_streams, self.group.num_members
    index = (slice(None),) * lead + (slice(0, s), slice(0, p))
    return jax.tree.map(lambda a: a[index], meshes.host_copy(tree))

  def _stream(self, expand: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    return {k: expand(v) for k, v in self.host_consts["stream"].items()}

  def trace_arrays(self, trace) -> dict[str, np.ndarray]:
    """The family's host trace of the real cells, each array (T, S, P, ...)."""
    return self.task.finish_trace(self._unpad(trace, lead=1),
                                  self._stream(lambda v: v[None, :, None]),
                                  self.host_consts["shared"])

  def to_host(self, state) -> Any:
    """Unpadded numpy copy of the state, whole on every process."""
    s, p = self.group.num_streams, self.group.num_members
    return jax.tree.map(lambda a: a[:s, :p] if a.ndim >= 2 else a, meshes.host_copy(state))

  def host_like(self) -> Any:
    """Zeros shaped like the unpadded host state (the restore target)."""
    s, p = self.group.num_streams, self.group.num_members
    return jax.tree.map(
        lambda a: np.zeros((s, p) + a.shape[2:] if a.ndim >= 2 else a.shape, a.dtype),
        self._abstract_state)

  def from_host(self, host) -> Any:
    padded = jax.tree.map(
        lambda a: placement.pad_leading(a, self.s_pad, self.p_pad) if np.ndim(a) >= 2 else a, host)
    return jax.device_put(padded, self.state_sharding)

  def records(self, step: int, outputs: Sequence[Any] | None, metrics) -> list[dict[str, Any]]:
    """One metrics.jsonl record per real (unpadded) cell; NaN is written as null. outputs: the
    chunk outputs since the last evaluation, whose last mean loss is the train loss (None, or
    a step-0 output, for none)."""
    loss = outputs[-1][0] if outputs else None
    loss = None if loss is None else self._unpad(loss)
    metrics, diverged = metrics
    diverged = self._unpad(diverged)
    metrics = self.task.finish_metrics(self._unpad(metrics), self._stream(lambda v: v[:, None]),
                                       self.host_consts["shared"])
    out = []
    for si, row in enumerate(self.group.cells):
      for pi, cell in enumerate(row):
        record = {"cell": cell.index, "step": int(step), "group": self.group.name,
                  "train_loss": None if loss is None else workdir.json_numbers(loss[si, pi]),
                  divergence.FIELD: divergence.step_of(diverged[si, pi])}
        record.update(cell.record)
        measured = {name: workdir.json_numbers(values[si, pi]) for name, values in metrics.items()}
        if record[divergence.FIELD] is not None:
          measured = divergence.nan_measurements(measured, missing=None)
        out.append(record | measured)
    return out


def train_groups(config: ml_collections.ConfigDict, wd: Path, groups: list[Group],
                 task: TaskFamily, mesh, callbacks: Sequence[engine.Callback] = ()) -> int:
  """Trains every group in `wd` to the end with the engine (resuming, or skipping finished
  ones), with one progress line; returns the steps trained, summed over groups."""
  steps = config.train.steps
  progress = Progress([(g.name, len(g.flat_cells()), steps,
                        g.static["width"] * (1 + g.static["num_hidden_layers"]) + task.input_dim)
                       for g in groups])
  measured = {r["cell"] for r in workdir.read_metrics(wd) if r["step"] == steps}
  callbacks = tuple(callbacks)
  if config.measure.trace_rare:
    callbacks = (engine.Callback(partial(_write_trace, wd), when="evaluation"), *callbacks)
  return sum(engine.run(GroupRun(config, g, task, mesh, measured), wd, callbacks, progress,
                        config.checkpoint_interval_s)
             for g in groups)


def _write_trace(wd: Path, event: engine.Event) -> None:
  """The per-step rare trace of the steps an evaluation covers (traces/<group>/)."""
  if event.outputs is None:  # the end measured again: nothing was trained
    return
  run = event.program
  trace = engine.concatenated([out[1] for out in event.outputs])
  traces.write_chunk(wd, run.group.name, np.arange(event.first_step, event.step + 1),
                     run.trace_arrays(trace))
