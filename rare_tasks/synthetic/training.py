"""Training groups of cells: compiled ensemble programs, padding and sharding, the chunk loop,
metrics records and checkpoints.

A group (cells of one shape) is one compiled ensemble, trained `eval_every` steps per dispatch.
After each chunk its measurements are appended to metrics.jsonl; checkpoints are written at
evaluation steps, so a killed run restarted with the same command resumes from the last one and
ends with the same results as an uninterrupted run. The loop forwards the arrays the task
family measures (`TaskFamily.finish_metrics`, `finish_trace`) without reading them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from rare_tasks.core import mesh as meshes
from rare_tasks.core import traces, workdir
from rare_tasks.core.checkpoints import GroupCheckpoints
from rare_tasks.core.progress import Progress, log
from rare_tasks.core.steps import eval_steps
from rare_tasks.synthetic import ensemble
from rare_tasks.synthetic.grid import Cell, Group
from rare_tasks.synthetic.models import model_of
from rare_tasks.synthetic.tasks import TaskFamily

CHECKPOINTS_DIR = "checkpoints"
# What training writes into a work directory.
FILES = (CHECKPOINTS_DIR, traces.TRACES_DIR)

# Called after every chunk with (group name, step); a test raises from it to simulate a kill.
ChunkHook = Callable[[str, int], None]


def train_spec_of(config: ml_collections.ConfigDict) -> ensemble.TrainSpec:
  t = config.train
  return ensemble.TrainSpec(
      steps=t.steps, batch_size=t.batch_size, optimizer=t.optimizer, schedule=t.schedule,
      warmup_steps=t.warmup_steps, final_lr_fraction=t.final_lr_fraction, momentum=t.momentum,
      eval_samples=config.eval_samples, injection=config.injection.schedule,
      withhold_steps=config.injection.withhold_steps)


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
  """Device arrays and compiled programs of one group, padded and sharded over a mesh."""

  def __init__(self, config: ml_collections.ConfigDict, group: Group, task: TaskFamily, mesh):
    self.group = group
    self.task = task
    self.spec = spec_of(config, group, task)
    s, p = group.num_streams, group.num_members
    self.axis, self.s_pad, self.p_pad = meshes.choose_layout(s, p, mesh.devices.size)
    consts = group_constants(task, group.cells)
    self.host_consts = dict(consts)
    per_member = ("mixture", "learning_rate", "gap", "burst_size")
    consts["seeds"] = meshes.pad_leading(consts["seeds"], self.s_pad)
    consts["stream"] = {k: meshes.pad_leading(v, self.s_pad) for k, v in consts["stream"].items()}
    for name in per_member:
      consts[name] = meshes.pad_leading(consts[name], self.s_pad, self.p_pad)
    ens = meshes.ensemble_sharding(mesh, self.axis)
    per_stream = meshes.stream_sharding(mesh, self.axis)
    rep = meshes.replicated(mesh)
    const_shardings = dict(seeds=per_stream, stream=per_stream, shared=rep,
                           **{name: ens for name in per_member})
    self.consts = {k: jax.device_put(v, const_shardings[k]) for k, v in consts.items()}
    init = partial(ensemble.init_state, self.spec, num_members=self.p_pad)
    abstract = jax.eval_shape(init, self.consts)
    self.state_sharding = jax.tree.map(lambda a: ens if a.ndim >= 2 else rep, abstract)
    self._init = jax.jit(init, out_shardings=self.state_sharding)
    self._ens = ens
    self._chunks: dict[int, Any] = {}
    self._eval = jax.jit(partial(ensemble.evaluate, self.spec), out_shardings=ens)
    self._trace = jax.jit(partial(ensemble.rare_trace, self.spec))

  def init(self):
    return self._init(self.consts)

  def chunk(self, state, num_steps: int):
    """Trains num_steps: -> (state, mean loss (S, P), per-step rare trace or None)."""
    if num_steps not in self._chunks:
      outs = (self.state_sharding, self._ens)
      if self.spec.measure.trace_rare:
        # Trace leaves carry a leading steps axis before (S, P).
        outs += (meshes.ensemble_sharding(self._ens.mesh, self.axis + 1),)
      self._chunks[num_steps] = jax.jit(
          partial(ensemble.train_chunk, self.spec, num_steps=num_steps), donate_argnums=0,
          out_shardings=outs)
    out = self._chunks[num_steps](state, self.consts)
    return out if len(out) == 3 else (*out, None)

  def evaluate(self, state):
    return self._eval(state, self.consts)

  def initial_trace(self, state):
    """The rare trace of a state, with a leading steps axis of one."""
    return jax.tree.map(lambda a: a[None], self._trace(state["params"], self.consts))

  def _unpad(self, tree: Any, lead: int = 0) -> Any:
    """Host copy of the real cells: leaves sliced to (S, P) after `lead` leading axes."""
    s, p = self.group.num_streams, self.group.num_members
    index = (slice(None),) * lead + (slice(0, s), slice(0, p))
    return jax.tree.map(lambda a: np.asarray(a)[index], jax.device_get(tree))

  def _stream(self, expand: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    return {k: expand(v) for k, v in self.host_consts["stream"].items()}

  def trace_arrays(self, trace) -> dict[str, np.ndarray]:
    """The family's host trace of the real cells, each array (T, S, P, ...)."""
    return self.task.finish_trace(self._unpad(trace, lead=1),
                                  self._stream(lambda v: v[None, :, None]),
                                  self.host_consts["shared"])

  def to_host(self, state) -> Any:
    """Unpadded numpy copy of the state (for checkpoints)."""
    s, p = self.group.num_streams, self.group.num_members
    host = jax.device_get(state)
    return jax.tree.map(lambda a: np.asarray(a)[:s, :p] if np.ndim(a) >= 2 else np.asarray(a),
                        host)

  def host_like(self) -> Any:
    """Zeros shaped like the unpadded host state (the restore target)."""
    s, p = self.group.num_streams, self.group.num_members
    abstract = jax.eval_shape(self._init, self.consts)
    return jax.tree.map(
        lambda a: np.zeros((s, p) + a.shape[2:] if a.ndim >= 2 else a.shape, a.dtype), abstract)

  def from_host(self, host) -> Any:
    padded = jax.tree.map(
        lambda a: meshes.pad_leading(a, self.s_pad, self.p_pad) if np.ndim(a) >= 2 else a, host)
    return jax.device_put(padded, self.state_sharding)

  def records(self, step: int, loss, metrics) -> list[dict[str, Any]]:
    """One metrics.jsonl record per real (unpadded) cell; NaN is written as null."""
    loss = None if loss is None else self._unpad(loss)
    metrics = self.task.finish_metrics(self._unpad(metrics), self._stream(lambda v: v[:, None]),
                                       self.host_consts["shared"])
    out = []
    for si, row in enumerate(self.group.cells):
      for pi, cell in enumerate(row):
        record = {"cell": cell.index, "step": int(step), "group": self.group.name,
                  "train_loss": None if loss is None else float(loss[si, pi])}
        record.update(cell.record)
        for name, values in metrics.items():
          record[name] = workdir.json_numbers(values[si, pi])
        out.append(record)
    return out


def train_groups(config: ml_collections.ConfigDict, wd: Path, groups: list[Group],
                 task: TaskFamily, mesh, chunk_hook: ChunkHook | None = None) -> int:
  """Trains every group in `wd` to the end (resuming, or skipping finished ones), with one
  progress line; returns the steps trained, summed over groups."""
  steps = config.train.steps
  progress = Progress([(g.name, len(g.flat_cells()), steps,
                        g.static["width"] * (1 + g.static["num_hidden_layers"]) + task.input_dim)
                       for g in groups])
  measured = {r["cell"] for r in workdir.read_metrics(wd) if r["step"] == steps}
  return sum(train_group(config, wd, g, task, mesh, progress, chunk_hook, measured)
             for g in groups)


def train_group(config: ml_collections.ConfigDict, wd: Path, group: Group, task: TaskFamily,
                mesh, progress: Progress, chunk_hook: ChunkHook | None,
                measured: set[int]) -> int:
  """Trains one group to the end from its latest checkpoint; returns the steps it ran.

  `measured`: the cells whose final-step record is in metrics.jsonl. A finished group with a
  record missing (a damaged file) is measured again from its final checkpoint.
  """
  steps = config.train.steps
  ckpt = GroupCheckpoints(wd / CHECKPOINTS_DIR / group.name)
  try:
    latest = ckpt.latest_step()
    if latest == steps:
      progress.skip(group.name, steps)
      if any(c.index not in measured for c in group.flat_cells()):
        g = GroupRun(config, group, task, mesh)
        state = g.from_host(ckpt.restore(g.host_like()))
        workdir.append_metrics(wd, g.records(steps, None, g.evaluate(state)))
        log.info("%s: final measurements were missing; measured again from the checkpoint",
                 group.name)
      return 0
    g = GroupRun(config, group, task, mesh)
    if latest is None:
      state, step = _start(config, wd, g), 0
    else:
      state, step = g.from_host(ckpt.restore(g.host_like())), int(latest)
      progress.skip(group.name, step)
      log.info("%s: resuming from the checkpoint at step %d", group.name, step)
    return _chunk_loop(config, wd, g, ckpt, state, step, progress, chunk_hook)
  finally:
    ckpt.close()


def _start(config: ml_collections.ConfigDict, wd: Path, g: GroupRun):
  """The initial state of a group, its step-0 measurements and (when traced) trace."""
  state = g.init()
  workdir.append_metrics(wd, g.records(0, None, g.evaluate(state)))
  if config.measure.trace_rare:
    traces.write_chunk(wd, g.group.name, np.array([0]), g.trace_arrays(g.initial_trace(state)))
  return state


def _chunk_loop(config: ml_collections.ConfigDict, wd: Path, g: GroupRun,
                ckpt: GroupCheckpoints, state, step: int, progress: Progress,
                chunk_hook: ChunkHook | None) -> int:
  """Trains from `step` to the end, a chunk per evaluation; returns the steps it ran.

  A chunk's records are written while the next chunk runs, and at the latest with the next
  checkpoint: a checkpoint never runs ahead of the metrics it follows.
  """
  steps, name = config.train.steps, g.group.name
  progress.start(name)
  last_save = time.perf_counter()
  pending = None
  ran = 0

  def flush(boundary, first, loss, metrics, trace):
    workdir.append_metrics(wd, g.records(boundary, loss, metrics))
    if trace is not None:
      traces.write_chunk(wd, name, np.arange(first, boundary + 1), g.trace_arrays(trace))

  for boundary in [b for b in eval_steps(steps, config.eval_every) if b > step]:
    num = boundary - step
    state, loss, trace = g.chunk(state, num)
    metrics = g.evaluate(state)
    if pending is not None:  # written while this chunk runs
      flush(*pending)
    pending = (boundary, step + 1, loss, metrics, trace)
    step = boundary
    ran += num
    if step == steps or time.perf_counter() - last_save >= config.checkpoint_interval_s:
      flush(*pending)
      pending = None
      if workdir.is_writer():
        ckpt.save(step, g.to_host(state))
      last_save = time.perf_counter()
    progress.advance(name, step, num)
    if chunk_hook is not None:
      chunk_hook(name, step)
  return ran
