"""The injection study (`lm_size_by_frequency`; docs/science.md, "The language-model study";
paper Figs. 5 and 6): decoders of several sizes pretrained on one text source with novel tasks
injected at controlled frequencies, top to bottom.

  1. the config, resolved per size and checked, the tasks drawn, and every program's mesh and
     memory estimate, before any compute;
  2. the work directory (config.json, run.json; a run of another config is refused);
  3. per size and run length, its cells trained by the engine as one ensemble program (or one
     program per cell), resumed from the program's latest checkpoint or skipped when finished;
     the injected rows are the program's input (every chunk's written to the cells' manifests,
     injections/<cell>.csv, as they are planned) and the task evaluation its measurement; with
     config.log.tensorboard, each cell's scalars go to tensorboard/<cell>/
     (rare_tasks.core.tensorboard);
  4. the report: results.csv, thresholds.csv, the figures and summary.md.

Every `eval_every` steps each cell's record goes to metrics.jsonl: per task and split (train,
test, test_unseen, test_mirror) the LABEL cross-entropy, accuracy, choice accuracy and format
rate after the prefix TOK1 TOK2 alone (`rare_tasks.lm.task_metrics`), and the background
validation loss with its gap to the entropy floor.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import jax
import ml_collections

from rare_tasks.core import engine, tensorboard, workdir
from rare_tasks.core.config import ConfigError
from rare_tasks.core.progress import Progress, log
from rare_tasks.core.report import RunReport
from rare_tasks.core.steps import eval_steps
from rare_tasks.lm import data, gradient_log, grid, grid_config, injections, memory, sharding, specs
from rare_tasks.lm import tasks as lm_tasks
from rare_tasks.lm.probes import Probes
from rare_tasks.lm.program import TextProgram
from rare_tasks.lm.report import injection as report
from rare_tasks.lm.task_metrics import TaskEvaluation
from rare_tasks.lm.task_trace import TaskTrace
from rare_tasks.lm.trainer import Trainer

FILES = (specs.CHECKPOINTS_DIR, injections.MANIFEST_DIR, specs.RUN_FILE, data.TOKENIZER_FILE,
         gradient_log.FILE, tensorboard.DIR, *report.FILES)
METRICS_KEY = ("cell", "step")
# Renamed studies and fields: an older run's config.json is read in today's names.
ALIASES = grid_config.ALIASES


@dataclasses.dataclass(frozen=True)
class Plan:
  """One compiled ensemble of cells of one size: its name (its checkpoints' folder), the size's
  resolved config, the cells and their trainer."""

  name: str
  c: ml_collections.ConfigDict
  cells: list[grid.Cell]
  trainer: Trainer


def run(config: ml_collections.ConfigDict, workdir_path: str | Path, overwrite: bool = False,
        run_files: Sequence[str] = FILES, devices: Sequence[jax.Device] | None = None,
        callbacks: Sequence[engine.Callback] = ()) -> RunReport:
  """Trains (or resumes, or only reports) the injection study of `config` in `workdir_path`;
  callbacks: the engine's (rare_tasks.core.engine.Callback), run beside the study's own."""
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
  plans, info = [], {"sizes": {}, "tasks": _describe_tasks(task_list)}
  checkpoint = specs.checkpoint_of(c)  # model.init_from's, read once, checked per size
  starts = {}
  for size, sc in sizes.items():
    these, info["sizes"][size] = size_plans(c, sc, size, cells[size], source, devices)
    starts[size] = specs.initial_params(sc, these[0].trainer.model.spec, checkpoint)
    plans += these
  info.update(source=source.describe(), loss_floor=source.loss_floor(),
              platform=devices[0].platform, cells=[cell.record() | {"name": cell.name}
                                                   for cs in cells.values() for cell in cs])
  # 2. The work directory.
  wd = workdir.prepare(workdir_path, c, overwrite, defaults=grid_config.base_config(),
                       run_files=run_files, not_identity=grid_config.NOT_IDENTITY,
                       aliases=ALIASES)
  specs.keep_text(wd, source, info)
  # 3. Training, program by program.
  progress = Progress([(p.name, len(p.cells), p.c.train.steps,
                        info["sizes"][p.c.model.preset]["flops_per_token"]) for p in plans])
  trained = 0
  with tensorboard_callbacks(c, wd / tensorboard.DIR, cells) as logged:
    for plan in plans:
      log.info("%s: %d cell(s), mesh %s", plan.name, len(plan.cells),
               dict(plan.trainer.mesh.shape))
      program = program_of(plan, c, wd, source, task_list, starts[plan.c.model.preset])
      own = mechanism_callbacks(plan, c, wd, source, task_list)
      trained += engine.run(program, wd, [*callbacks, *logged, *own], progress,
                            c.checkpoint_interval_s)
  # 4. The report.
  records = workdir.read_metrics(wd, METRICS_KEY)
  gradients = workdir.read_metrics(wd, gradient_log.KEY, gradient_log.FILE)
  summary = report.write(wd, c, info, cells, task_list, records, gradients)
  return RunReport(wd, trained, time.perf_counter() - start, summary)


def tensorboard_callbacks(c: ml_collections.ConfigDict, directory: Path,
                          cells: dict[str, list[grid.Cell]]
                          ) -> AbstractContextManager[tuple[engine.Callback, ...]]:
  """tensorboard.writing for the cells (per size): each cell's run in directory/<cell>/
  (grid.run_names), written when config.log.tensorboard is on."""
  names = grid.run_names([cell for cs in cells.values() for cell in cs])
  return tensorboard.writing(c.log.tensorboard, directory, lambda r: names[r["cell"]])


def size_plans(c: ml_collections.ConfigDict, sc: ml_collections.ConfigDict, size: str,
               size_cells: list[grid.Cell], source: data.TextSource,
               devices: list[jax.Device]) -> tuple[list[Plan], dict[str, Any]]:
  """The programs of one size, per run length: one ensemble if it fits (and mesh.fsdp is 1, and
  mesh.one_program_per_cell is not set), else one per cell with its parameters over mesh.fsdp
  devices (all of them when the ensemble does not fit)."""
  def plan(lc: ml_collections.ConfigDict, name: str, plan_cells: list[grid.Cell],
           fsdp: int) -> Plan:
    mesh = specs.ensemble_mesh(lc, len(plan_cells), devices, fsdp)
    trainer = specs.ensemble_trainer(lc, source.vocab_size, len(plan_cells), mesh)
    return Plan(name, lc, plan_cells, trainer)

  total = specs.total_params(specs.model_spec(sc, source.vocab_size))

  def fits(p: Plan) -> str:
    return memory.check_fits(sc.model.preset, p.trainer.abstract_state, total, len(p.cells),
                             devices)

  def length_plans(lc: ml_collections.ConfigDict, cs: list[grid.Cell]) -> tuple[list[Plan], str]:
    fsdp = c.mesh.fsdp
    if fsdp == 1 and not c.mesh.one_program_per_cell:
      ensemble = plan(lc, cs[0].program, cs, fsdp)
      try:
        return [ensemble], fits(ensemble)
      except ConfigError as e:
        log.info("%s: the ensemble does not fit (%s); one program per cell, FSDP", size, e)
        fsdp = len(devices)
    out = [plan(lc, name, pcs, fsdp) for name, pcs in grid.programs(cs, one_per_cell=True)]
    return out, fits(out[0])

  by_length: dict[int, list[grid.Cell]] = {}
  for cell in size_cells:
    by_length.setdefault(cell.steps, []).append(cell)
  plans, fit = [], ""
  for steps, cs in by_length.items():
    lc = ml_collections.ConfigDict(sc.to_dict())
    lc.train.steps = steps
    these, fit = length_plans(lc, cs)
    plans += these
  info = specs.run_info(sc, plans[0].trainer.model.spec, source, plans[0].trainer.mesh)
  info.update(memory=fit, programs=len(plans))
  return plans, info


def program_of(plan: Plan, c: ml_collections.ConfigDict, wd: Path, source: data.TextSource,
               task_list: Sequence[lm_tasks.Task], init_params) -> TextProgram:
  """The engine's program of a plan: the text, each cell's injected rows as input, the task
  evaluation as a measurement, and what config.mechanism switches on: the probes (a
  measurement), the task-loss trace (traced by the chunk) and, for the gradient decomposition,
  chunks that end before every update it measures."""
  mesh = plan.trainer.mesh
  batch_size = plan.c.train.batch_size
  plans = injection_plans(plan, c)
  injector = injections.Injector(wd, [cell.name for cell in plan.cells], plans, task_list,
                                 batch_size, source.eos_id, sharding.injected_sharding(mesh))
  measurements: list[Any] = [TaskEvaluation(task_list, len(plan.cells), c.data.vocab_size, mesh)]
  m = c.mechanism
  if m.probes:
    measurements.append(Probes(task_list, mesh, m.fourier_factor))
  trace = TaskTrace(task_list, m.retention_instances, c.task.seed, mesh) if m.retention else None
  extra = gradient_updates(plan, plans) if m.gradients else ()
  return TextProgram(plan.name, plan.c, wd, source, plan.trainer,
                     members=[cell.record() for cell in plan.cells],
                     seeds=[cell.seed for cell in plan.cells], metrics_key=METRICS_KEY,
                     checkpoint_dir=f"{specs.CHECKPOINTS_DIR}/{plan.name}",
                     init_params=init_params, inputs=injector, measurements=measurements,
                     trace=trace, extra_boundaries=extra)


def injection_plans(plan: Plan, c: ml_collections.ConfigDict) -> list[injections.Injection]:
  """Each cell's injection at the plan's batch size."""
  return [grid.injection_of(cell, c, plan.c.train.batch_size) for cell in plan.cells]


def gradient_updates(plan: Plan, plans: Sequence[injections.Injection]) -> list[int]:
  """The updates the gradient decomposition measures in a plan's run."""
  steps = plan.c.train.steps
  return gradient_log.measured_updates(plans, steps, eval_steps(steps, plan.c.eval_every))


def mechanism_callbacks(plan: Plan, c: ml_collections.ConfigDict, wd: Path,
                        source: data.TextSource, task_list: Sequence[lm_tasks.Task]
                        ) -> list[engine.Callback]:
  """The engine callbacks config.mechanism switches on for a plan: the gradient
  decomposition's log."""
  if not c.mechanism.gradients:
    return []
  plans = injection_plans(plan, c)
  log_ = gradient_log.GradientLog(
      wd, plan.trainer, source, [{"cell": cell.index} for cell in plan.cells], plans, task_list,
      plan.c.train.batch_size, source.eos_id, c.mechanism.top_k, gradient_updates(plan, plans),
      seed=c.task.seed)
  return [log_.callback()]


def _describe_tasks(task_list: Sequence[lm_tasks.Task]) -> dict[str, Any]:
  return {t.name: {"symbols": t.symbols.tolist(), "answers": t.answers.tolist(),
                   "train_instances": len(t.train), "test_instances": len(t.test)}
          for t in task_list}
