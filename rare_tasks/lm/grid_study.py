"""The injection study (`lm_width_by_frequency`, PAPER.md sections 3 and 5, paper Figs. 5 and 6):
decoders of several sizes pretrained on one text source with novel tasks injected at controlled
frequencies, top to bottom.

  1. the config, resolved per size and checked, the tasks drawn, and every program's mesh and
     memory estimate, before any compute;
  2. the work directory (config.json, run.json; a run of another config is refused);
  3. per size, its cells trained as one ensemble program (or one program per cell), resumed
     from the program's latest checkpoint or skipped when finished; every chunk's injections
     are written to the cells' manifests (injections/<cell>.csv) as they are planned;
  4. the report: results.csv, the figures and summary.md.

Every `eval_every` steps each cell's record goes to metrics.jsonl: per task the LABEL
cross-entropy and accuracy on the train and the test instances (the prefix TOK1 TOK2 alone,
argmax over the whole vocabulary), and the background validation loss with its gap to the
entropy floor.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from rare_tasks import injection
from rare_tasks.core import mesh as meshes
from rare_tasks.core import workdir
from rare_tasks.core.checkpoints import GroupCheckpoints
from rare_tasks.core.config import ConfigError
from rare_tasks.core.progress import log
from rare_tasks.core.report import RunReport
from rare_tasks.lm import config as lm_config
from rare_tasks.lm import (
  data,
  grid,
  grid_config,
  injections,
  memory,
  pretrain,
  sharding,
  tasks,
)
from rare_tasks.lm.model import Model
from rare_tasks.lm.report import injection as grid_report
from rare_tasks.lm.trainer import Trainer

FILES = (pretrain.CHECKPOINTS_DIR, injections.MANIFEST_DIR, pretrain.RUN_FILE,
         data.TOKENIZER_FILE, *grid_report.FILES)
METRICS_KEY = ("cell", "step")
# The label evaluation's logits per dispatch are capped near this many floats.
LABEL_LOGITS = 1 << 24


class Program:
  """One compiled ensemble of cells of one size: its config, trainer and plans."""

  def __init__(self, name: str, sc: ml_collections.ConfigDict, cells: list[grid.Cell],
               c: ml_collections.ConfigDict, devices: Sequence[jax.Device], fsdp: int):
    self.name, self.cells = name, cells
    self.c = ml_collections.ConfigDict(sc.to_dict())
    self.c.init_seeds = tuple(cell.seed for cell in cells)  # cells of one seed share an init
    self.c.mesh.fsdp = fsdp
    lm_config.check_mesh(self.c, len(devices))
    split = self.c.mesh.members or sharding.member_axis_size(len(cells), len(devices), fsdp)
    self.mesh = sharding.make_mesh(devices, split, fsdp)
    lm_config.check_batch(self.c, sharding.batch_split(self.mesh), len(devices))
    spec = pretrain.model_spec(self.c, self.c.data.vocab_size)
    self.trainer = Trainer(Model(spec), pretrain.train_spec(self.c), len(cells), self.mesh)
    self.plans = [grid.injection_of(cell, c, self.c.train.batch_size) for cell in cells]

  def fits(self, devices: Sequence[jax.Device], total_params: int) -> str:
    """The memory estimate; ConfigError when it does not fit."""
    return memory.check_fits(self.c.model.preset, self.trainer.abstract_state, total_params,
                             len(self.cells), devices)


def run(config: ml_collections.ConfigDict, workdir_path: str | Path, overwrite: bool = False,
        run_files: Sequence[str] = FILES, devices: Sequence[jax.Device] | None = None,
        chunk_hook: pretrain.ChunkHook | None = None) -> RunReport:
  """Trains (or resumes, or only reports) the injection study of `config` in `workdir_path`."""
  start = time.perf_counter()
  devices = list(devices) if devices is not None else jax.devices()
  # 1. The config, the tasks and every program, checked before any compute.
  c, sizes = grid_config.resolve(config, devices[0].platform)
  source = data.source_of(next(iter(sizes.values())))
  if source.vocab_size != c.data.vocab_size:  # only real text's padded tokenizer can differ
    raise ConfigError(
        f"config.data.vocab_size = {c.data.vocab_size!r}: allowed: the model's vocabulary on "
        f"this text, {source.vocab_size:,} (the tokenizer's {source.tokenizer.size:,} tokens "
        "padded to a multiple of 128): the tasks draw their tokens from data.vocab_size")
  task_list = grid.tasks_of(c, source.eos_id)
  cells = grid.cells(c)
  programs, info = [], {"sizes": {}, "tasks": _describe_tasks(task_list)}
  checkpoint = pretrain.checkpoint_of(c)  # model.init_from's, read once, checked per size
  starts = {}
  for size, sc in sizes.items():
    size_programs, size_info = _programs(c, sc, size, cells[size], source, devices)
    starts[size] = pretrain.initial_params(sc, size_programs[0].trainer.model.spec, checkpoint)
    programs += size_programs
    info["sizes"][size] = size_info
  info.update(source=source.describe(), loss_floor=source.loss_floor(),
              platform=devices[0].platform, cells=[cell.record() | {"name": cell.name}
                                                   for cs in cells.values() for cell in cs])
  # 2. The work directory.
  wd = workdir.prepare(workdir_path, c, overwrite, defaults=grid_config.base_config(),
                       run_files=run_files, not_identity=grid_config.NOT_IDENTITY)
  pretrain.keep_text(wd, source, info)
  # 3. Training, program by program.
  trained = 0
  for program in programs:
    log.info("%s: %d cell(s), mesh %s", program.name, len(program.cells),
             dict(program.mesh.shape))
    trained += _train(program, c, wd, source, task_list, chunk_hook,
                      starts[program.c.model.preset])
  # 4. The report.
  records = workdir.read_metrics(wd, METRICS_KEY)
  summary = grid_report.write(wd, c, info, cells, task_list, records)
  return RunReport(wd, trained, time.perf_counter() - start, summary)


def _programs(c, sc, size: str, size_cells: list[grid.Cell], source: data.TextSource,
              devices: Sequence[jax.Device]) -> tuple[list[Program], dict[str, Any]]:
  """The programs of one size: one ensemble if it fits (and mesh.fsdp is 1, and
  mesh.one_program_per_cell is not set), else one per cell with its parameters over mesh.fsdp
  devices (all of them when the ensemble does not fit)."""
  ensemble = Program(size, sc, size_cells, c, devices, c.mesh.fsdp)
  info = pretrain.run_info(ensemble.c, ensemble.trainer.model.spec, source, ensemble.mesh)
  total = info["params"]["total"]
  fsdp = c.mesh.fsdp
  if fsdp == 1 and not c.mesh.one_program_per_cell:
    try:
      info["memory"] = ensemble.fits(devices, total)
      info["programs"] = 1
      return [ensemble], info
    except ConfigError as e:
      log.info("%s: the ensemble does not fit (%s); one program per cell, FSDP", size, e)
      fsdp = len(devices)
  out = [Program(name, sc, cs, c, devices, fsdp)
         for name, cs in grid.programs(size, size_cells, one_per_cell=True)]
  info["memory"] = out[0].fits(devices, total)
  info["programs"] = len(out)
  return out, info


def _describe_tasks(task_list: Sequence[tasks.Task]) -> dict[str, Any]:
  return {t.name: {"symbols": t.symbols.tolist(), "answers": t.answers.tolist(),
                   "train_instances": len(t.train), "test_instances": len(t.test)}
          for t in task_list}


def _train(program: Program, c, wd: Path, source: data.TextSource,
           task_list: Sequence[tasks.Task], chunk_hook, init_params) -> int:
  pc = program.c
  final = pc.train.steps
  wanted = {cell.index for cell in program.cells}

  def recorded() -> int:
    return len({r["cell"] for r in workdir.read_metrics(wd, METRICS_KEY)
                if r["step"] == final and r["cell"] in wanted})

  def make_loop(state, step, ckpt):
    return InjectionLoop(pc, wd, source, program, ckpt, state, step, task_list)

  return pretrain.train(pc, wd, source, program.trainer, chunk_hook, make_loop,
                        f"{pretrain.CHECKPOINTS_DIR}/{program.name}", recorded, init_params)


class InjectionLoop(pretrain.Loop):
  """The pretraining loop with each cell's injections and the task evaluation."""

  def __init__(self, c, wd: Path, source: data.TextSource, program: Program,
               ckpt: GroupCheckpoints, state, step: int, task_list: Sequence[tasks.Task]):
    super().__init__(c, wd, source, program.trainer, ckpt, state, step)
    self.program, self.tasks = program, tuple(task_list)
    self.names = [t.name for t in task_list]
    self.heads_sharding = sharding.heads_sharding(program.mesh)
    self.injecting = any(plan.rate > 0 for plan in program.plans)
    for cell in program.cells:  # a resumed run rewrites what came after its checkpoint
      injections.truncate_manifest(injections.manifest_path(wd, cell.name), step)
    prefixes = np.concatenate([t.instances[:, :tasks.PREFIX] for t in task_list])
    labels = np.concatenate([t.instances[:, tasks.PREFIX] for t in task_list])
    per = max(1, min(len(labels), LABEL_LOGITS // (len(program.cells) * tasks.PREFIX
                                                    * c.data.vocab_size)))
    pad = -len(labels) % per
    rep = meshes.replicated(program.mesh)
    self.prefixes = jax.device_put(np.pad(prefixes, ((0, pad), (0, 0))), rep)
    self.labels = jax.device_put(np.pad(labels, (0, pad)), rep)
    self.label_rows = per
    offsets = np.cumsum([0] + [len(t.instances) for t in task_list])
    self.splits = {t.name: (offsets[k] + t.train, offsets[k] + t.test)
                   for k, t in enumerate(task_list)}

  def heads(self, first_step: int, num_steps: int) -> jax.Array | None:
    heads, manifests = injections.plan_chunk(self.program.plans, self.tasks, first_step,
                                             num_steps, self.c.train.batch_size,
                                             self.source.eos_id)
    for cell, rows in zip(self.program.cells, manifests):
      injections.append_manifest(injections.manifest_path(self.wd, cell.name), rows, self.names)
    return jax.device_put(heads, self.heads_sharding) if self.injecting else None

  def measure(self, state) -> Any:
    val = super().measure(state)
    ce, hit = self.trainer.label_metrics(state, self.prefixes, self.labels, self.label_rows)
    return val, ce, hit

  def records(self, step: int, host: dict[str, np.ndarray] | None, measured: Any,
              rate: float) -> list[dict[str, Any]]:
    val, ce, hit = (np.asarray(x) for x in measured)
    out = []
    for m, (cell, plan) in enumerate(zip(self.program.cells, self.program.plans)):
      r = cell.record() | self.member_record(m, step, host, val, rate)
      r["instances_per_task"] = 0 if plan.rate == 0 else injection.examples_before(
          step, plan.withhold_steps, plan.gap, plan.rate)
      for name, (train, test) in self.splits.items():
        r.update({f"{name}_train_loss": float(ce[m, train].mean()),
                  f"{name}_train_accuracy": float(hit[m, train].mean()),
                  f"{name}_test_loss": float(ce[m, test].mean()),
                  f"{name}_test_accuracy": float(hit[m, test].mean())})
      out.append(r)
    return out
