"""The pretraining study: an ensemble of decoders of one preset trained on one text source, top
to bottom.

  1. the config, resolved from its preset and checked, the text source (for real text, its
     tokenizer and dataset cache, built when missing), the mesh and trainer, model.init_from's
     checkpoint and the memory estimate, before any training;
  2. the work directory (config.json, run.json and a real corpus's tokenizer.json; a run of
     another config, or resumed on a changed corpus, is refused);
  3. training with the engine: resumed from the latest checkpoint, or skipped when finished
     (with config.log.tensorboard, each member's scalars in tensorboard/size=<preset>,seed=<s>/:
     rare_tasks.core.tensorboard);
  4. the report: figures/loss.png and summary.md.

Every `eval_every` steps each member's train and validation loss go to metrics.jsonl (one record
per member); checkpoints (parameters, optimizer state and the data position) are written at
evaluation steps, at most every `checkpoint_interval_s` seconds and always at the end, so a run
killed at any moment and restarted with the same command ends as an uninterrupted one would.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import jax
import ml_collections

from rare_tasks.core import engine, tensorboard, workdir
from rare_tasks.core.config import check
from rare_tasks.core.progress import Progress, log
from rare_tasks.core.report import RunReport
from rare_tasks.lm import config as lm_config
from rare_tasks.lm import data, ladder, memory, specs
from rare_tasks.lm.program import TextProgram
from rare_tasks.lm.report import pretraining as report

FILES = (specs.CHECKPOINTS_DIR, specs.RUN_FILE, data.TOKENIZER_FILE, tensorboard.DIR,
         *report.FILES)
METRICS_KEY = ("member", "step")


def run(config: ml_collections.ConfigDict, workdir_path: str | Path, overwrite: bool = False,
        run_files: Sequence[str] = FILES, devices: Sequence[jax.Device] | None = None,
        callbacks: Sequence[engine.Callback] = ()) -> RunReport:
  """Trains (or resumes, or only reports) the study of `config` in `workdir_path`; callbacks:
  the engine's (rare_tasks.core.engine.Callback), run beside the study's own."""
  start = time.perf_counter()
  devices = list(devices) if devices is not None else jax.devices()
  # 1. The config and everything derived from it, checked before any compute.
  c = lm_config.resolve(config, devices[0].platform)
  check(not c.model.init_from or len(c.init_seeds) == 1, "init_seeds", c.init_seeds,
        "one seed with model.init_from (every member would start from the same checkpoint)")
  members = len(c.init_seeds)
  mesh = specs.ensemble_mesh(c, members, devices, c.mesh.fsdp)
  source = data.source_of(c)
  trainer = specs.ensemble_trainer(c, source.vocab_size, members, mesh)
  spec = trainer.model.spec
  init_params = specs.initial_params(c, spec)
  info = specs.run_info(c, spec, source, trainer.mesh)
  info["memory"] = memory.check_fits(c.model.preset, trainer.abstract_state,
                                     info["params"]["total"], members, devices)
  # 2. The work directory.
  wd = workdir.prepare(workdir_path, c, overwrite, defaults=lm_config.base_config(),
                       run_files=run_files, not_identity=lm_config.NOT_IDENTITY)
  specs.keep_text(wd, source, info)
  p = info["params"]
  log.info("%s %s: %s parameters (%s non-embedding; the ladder counts it %s), %d member(s), "
           "mesh %s; %s", c.model.preset, c.model.block, f"{p['total']:,}",
           f"{p['non_embedding']:,}", ladder.size_name(p["nominal"]), members,
           dict(trainer.mesh.shape), info["memory"])
  # 3. Training.
  program = TextProgram(
      c.model.preset, c, wd, source, trainer,
      members=[{"member": m, "init_seed": int(s)} for m, s in enumerate(c.init_seeds)],
      seeds=c.init_seeds, metrics_key=METRICS_KEY, checkpoint_dir=specs.CHECKPOINTS_DIR,
      init_params=init_params)
  progress = Progress([(program.name, members, c.train.steps, info["flops_per_token"])])
  names = tensorboard.run_names([{"size": c.model.preset, "seed": s} for s in c.init_seeds],
                                ("size", "seed"))
  with tensorboard.writing(c.log.tensorboard, wd / tensorboard.DIR,
                           lambda r: names[r["member"]]) as logged:
    trained = engine.run(program, wd, [*callbacks, *logged], progress, c.checkpoint_interval_s)
  # 4. The report.
  summary = report.write(wd, c, info, workdir.read_metrics(wd, METRICS_KEY))
  return RunReport(wd, trained, time.perf_counter() - start, summary)
