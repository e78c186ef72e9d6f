"""Runs a grid study end to end: validate, predict, train every group, write results and figures.

A group (cells of one shape) is one compiled ensemble, trained `eval_every` steps per dispatch.
After each chunk its measurements are appended to metrics.jsonl; checkpoints are written at
evaluation steps, so a killed run restarted with the same command resumes from the last one and
ends with the same results as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from rare_tasks import (
    ensemble,
    mechanism_report,
    retention,
    scaling_report,
    sharding,
    theory,
    traces,
    workdir,
)
from rare_tasks.checkpoints import GroupCheckpoints
from rare_tasks.config_schema import validate
from rare_tasks.grid import Cell, Group, expand, group_cells
from rare_tasks.models import MODELS
from rare_tasks.progress import Progress, log
from rare_tasks.results_table import build_results, write_results
from rare_tasks.study_report import write_predictions, write_report
from rare_tasks.tasks import TASKS, TaskFamily

# Called after every chunk with (group name, step); a test raises from it to simulate a kill.
ChunkHook = Callable[[str, int], None]


@dataclasses.dataclass
class RunReport:
  """What a run did: its work directory, whether it trained, and the headline numbers."""

  workdir: Path
  trained_steps: int
  wall_s: float
  summary: dict[str, Any]


def task_of(config: ml_collections.ConfigDict) -> TaskFamily:
  """The config's task family, built from the fields it reads (its `config_fields`)."""
  t = config.task
  family = TASKS[t.name]
  return family(**{f: tuple(t[f]) if isinstance(t[f], (list, tuple)) else t[f]
                   for f in family.config_fields})


def model_of(config: ml_collections.ConfigDict, static: dict[str, Any], task: TaskFamily):
  return MODELS[config.model.name].for_task(
      task, width=static["width"], activation=static["activation"],
      num_hidden_layers=static["num_hidden_layers"])


def train_spec_of(config: ml_collections.ConfigDict) -> ensemble.TrainSpec:
  t = config.train
  return ensemble.TrainSpec(
      steps=t.steps, batch_size=t.batch_size, optimizer=t.optimizer, schedule=t.schedule,
      warmup_steps=t.warmup_steps, final_lr_fraction=t.final_lr_fraction, momentum=t.momentum,
      eval_samples=config.eval_samples, injection=config.injection.mode,
      withhold_steps=config.injection.withhold_steps)


def measure_spec_of(config: ml_collections.ConfigDict) -> ensemble.MeasureSpec:
  m = config.measure
  return ensemble.MeasureSpec(allocation=m.allocation, interference=m.interference,
                              interference_samples=m.interference_samples,
                              trace_rare=m.trace_rare)


def predict_cell(task: TaskFamily, cell: Cell) -> theory.Prediction | None:
  """The closed-form optimum of a cell, for a family with theory (else None)."""
  if not task.has_theory:
    return None
  v = cell.values
  return theory.predict(task.mixture(v["rare_frequency"], v["common_exponent"]),
                        task.spectrum(v["beta"]), v["width"])


def eval_steps(total: int, every: int) -> list[int]:
  """The steps at which cells are measured (and may be checkpointed): multiples and the end."""
  steps = list(range(every, total, every))
  return steps + [total]


def group_constants(task, rows: Sequence[Sequence[Cell]], injection: str = "mixture",
                    batch_size: int = 0) -> ensemble.Constants:
  """Host constants of cells laid out rows[stream][member] (unpadded)."""
  seeds = np.array([r[0].values["seed"] for r in rows])
  per_stream = [task.stream_constants(r[0].values) for r in rows]
  streams = {k: np.stack([c[k] for c in per_stream]) for k in per_stream[0]}
  mixtures = np.stack([[task.mixture(c.values["rare_frequency"], c.values["common_exponent"])
                        for c in r] for r in rows])
  rates = np.array([[c.values["learning_rate"] for c in r] for r in rows])
  gaps = np.array([[c.values["gap"] for c in r] for r in rows])
  bursts = np.array([[retention.burst_size(c.values["rare_frequency"], c.values["gap"],
                                           batch_size, task.num_rare)
                      if injection == "bursts" else 0 for c in r] for r in rows])
  return ensemble.make_constants(task, seeds, streams, mixtures, rates, gaps, bursts)


class GroupRun:
  """Device arrays and compiled programs of one group, padded and sharded over a mesh."""

  def __init__(self, config, group: Group, task, mesh):
    self.group = group
    self.spec = ensemble.EnsembleSpec(model_of(config, group.static, task), task,
                                      train_spec_of(config), measure_spec_of(config))
    s, p = group.num_streams, group.num_members
    self.axis, self.s_pad, self.p_pad = sharding.choose_layout(s, p, mesh.devices.size)
    consts = group_constants(task, group.cells, config.injection.mode, config.train.batch_size)
    self.host_consts = dict(consts)
    per_member = ("mixture", "learning_rate", "gap", "burst_size")
    consts["seeds"] = sharding.pad_leading(consts["seeds"], self.s_pad)
    consts["stream"] = {k: sharding.pad_leading(v, self.s_pad) for k, v in consts["stream"].items()}
    for name in per_member:
      consts[name] = sharding.pad_leading(consts[name], self.s_pad, self.p_pad)
    ens = sharding.ensemble_sharding(mesh, self.axis)
    per_stream = sharding.stream_sharding(mesh, self.axis)
    rep = sharding.replicated(mesh)
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
    self._task = task

  def init(self):
    return self._init(self.consts)

  def chunk(self, state, num_steps: int):
    """Trains num_steps: -> (state, mean loss (S, P), per-step rare trace or None)."""
    if num_steps not in self._chunks:
      outs = (self.state_sharding, self._ens)
      if self.spec.measure.trace_rare:
        # Trace leaves carry a leading steps axis before (S, P).
        outs += (sharding.ensemble_sharding(self._ens.mesh, self.axis + 1),)
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

  def trace_arrays(self, trace) -> dict[str, np.ndarray]:
    """Host trace of the real cells: rare_fvu and rare_capture, each (T, S, P, R)."""
    s, p = self.group.num_streams, self.group.num_members
    host = jax.device_get(trace)
    stream = {k: v[None, :, None] for k, v in self.host_consts["stream"].items()}
    capture = self._task.feature_capture(host["encoder_map"][:, :s, :p], stream,
                                         self.host_consts["shared"], self._task.rare_tasks)
    return {"rare_fvu": np.asarray(host["rare_fvu"])[:, :s, :p], "rare_capture": capture}

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
        lambda a: sharding.pad_leading(a, self.s_pad, self.p_pad) if np.ndim(a) >= 2 else a, host)
    return jax.device_put(padded, self.state_sharding)

  def records(self, step: int, loss, metrics) -> list[dict[str, Any]]:
    """One metrics.jsonl record per real (unpadded) cell; NaN is written as null."""
    loss = None if loss is None else np.asarray(jax.device_get(loss))
    metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
    encoder_map = metrics.pop("encoder_map", None)
    if self._task.has_theory:
      metrics["feature_capture"] = np.full_like(metrics[self._task.loss_name], np.nan)
    if encoder_map is not None:
      s, p = self.group.num_streams, self.group.num_members
      stream = {k: v[:, None] for k, v in self.host_consts["stream"].items()}
      metrics["feature_capture"][:s, :p] = self._task.feature_capture(
          encoder_map[:s, :p], stream, self.host_consts["shared"])
    out = []
    for si, row in enumerate(self.group.cells):
      for pi, cell in enumerate(row):
        record = {"cell": cell.index, "step": int(step), "group": self.group.name,
                  "train_loss": None if loss is None else float(loss[si, pi])}
        record.update({k: _jsonable(v) for k, v in cell.values.items()})
        for name, values in metrics.items():
          record[name] = _json_numbers(values[si, pi])
        out.append(record)
    return out


def _json_numbers(a: np.ndarray) -> Any:
  """An array as nested lists of floats, NaN as None."""
  if np.ndim(a) == 0:
    return None if np.isnan(a) else float(a)
  return [_json_numbers(x) for x in a]


def _jsonable(v: Any) -> Any:
  return list(v) if isinstance(v, tuple) else v


def run(config: ml_collections.ConfigDict, workdir_path: str | Path, overwrite: bool = False,
        devices: Sequence[jax.Device] | None = None,
        chunk_hook: ChunkHook | None = None) -> RunReport:
  """Runs (or resumes, or reports) the grid study of `config` in `workdir_path`."""
  start = time.perf_counter()
  validate(config)
  cells = expand(config)
  groups = group_cells(cells)
  wd = workdir.prepare(workdir_path, config, overwrite)
  task = task_of(config)
  predictions = {c.index: predict_cell(task, c) for c in cells}
  mesh = sharding.ensemble_mesh(devices)
  steps = config.train.steps
  log.info("%d cells in %d ensemble groups, %d steps each, on %d device(s); workdir %s",
           len(cells), len(groups), steps, mesh.devices.size, wd)
  if task.has_theory:
    write_predictions(wd, cells, predictions)
  trained = train_groups(config, wd, groups, task, mesh, chunk_hook)

  metrics = workdir.read_metrics(wd)
  results = build_results(config, task, cells, predictions, metrics)
  write_results(wd, results, task)
  sections, numbers = mechanism_report.write(config, wd, task, cells, groups, predictions, metrics)
  if config.scaling.enabled:
    sections += scaling_report.write(config, wd, task, results, {c.index: c.values for c in cells})
  summary = write_report(config, wd, task, cells, predictions, results, metrics,
                         time.perf_counter() - start, trained, sections)
  summary.update(numbers)
  if trained == 0:
    log.info("Finished run found in %s: nothing retrained; report regenerated.", wd)
  return RunReport(wd, trained, time.perf_counter() - start, summary)


def train_groups(config, wd: Path, groups: list[Group], task, mesh,
                 chunk_hook: ChunkHook | None = None) -> int:
  """Trains every group in `wd` to the end (resuming, or skipping finished ones), with one
  progress line; returns the steps trained, summed over groups."""
  steps = config.train.steps
  progress = Progress([(g.name, len(g.flat_cells()), steps,
                        g.static["width"] * (1 + g.static["num_hidden_layers"]) + task.input_dim)
                       for g in groups])
  measured = {r["cell"] for r in workdir.read_metrics(wd) if r["step"] == steps}
  return sum(train_group(config, wd, g, task, mesh, progress, chunk_hook, measured)
             for g in groups)


def train_group(config, wd: Path, group: Group, task, mesh, progress: Progress,
                 chunk_hook: ChunkHook | None, measured: set[int]) -> int:
  """Trains one group to the end from its latest checkpoint; returns the steps it ran.

  `measured`: the cells whose final-step record is in metrics.jsonl. A finished group with a
  record missing (a damaged file) is measured again from its final checkpoint.
  """
  steps = config.train.steps
  ckpt = GroupCheckpoints(wd / "checkpoints" / group.name)
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
    tracing = config.measure.trace_rare
    if latest is None:
      state = g.init()
      workdir.append_metrics(wd, g.records(0, None, g.evaluate(state)))
      if tracing:
        traces.write_chunk(wd, group.name, np.array([0]), g.trace_arrays(g.initial_trace(state)))
      step = 0
    else:
      state = g.from_host(ckpt.restore(g.host_like()))
      step = int(latest)
      progress.skip(group.name, step)
      log.info("%s: resuming from the checkpoint at step %d", group.name, step)
    progress.start(group.name)
    last_save = time.perf_counter()
    pending = None
    ran = 0

    def flush(boundary, first, loss, metrics, trace):
      workdir.append_metrics(wd, g.records(boundary, loss, metrics))
      if trace is not None:
        traces.write_chunk(wd, group.name, np.arange(first, boundary + 1), g.trace_arrays(trace))

    for boundary in [b for b in eval_steps(steps, config.eval_every) if b > step]:
      num = boundary - step
      state, loss, trace = g.chunk(state, num)
      metrics = g.evaluate(state)
      if pending is not None:  # written while this chunk runs
        flush(*pending)
      pending = (boundary, step + 1, loss, metrics, trace)
      step = boundary
      ran += num
      due = time.perf_counter() - last_save >= config.checkpoint_interval_s
      if step == steps or due:
        flush(*pending)
        pending = None
        if workdir.is_writer():
          ckpt.save(step, g.to_host(state))
        last_save = time.perf_counter()
      progress.advance(group.name, step, num)
      if chunk_hook is not None:
        chunk_hook(group.name, step)
    return ran
  finally:
    ckpt.close()
