"""The pretraining study: an ensemble of decoders of one preset trained on one text source, top
to bottom.

  1. the config, resolved from its preset and checked, the text source (for real text, its
     tokenizer and dataset cache, built when missing), the mesh, model.init_from's checkpoint
     and the memory estimate, before any training;
  2. the work directory (config.json, run.json and a real corpus's tokenizer.json; a run of
     another config, or resumed on a changed corpus, is refused);
  3. training in chunks of steps, resumed from the latest checkpoint, or skipped when finished;
  4. the report: figures/loss.png and summary.md.

Every `eval_every` steps each member's train and validation loss go to metrics.jsonl (one record
per member); checkpoints (parameters, optimizer state and the data position) are written at
evaluation steps, at most every `checkpoint_interval_s` seconds and always at the end, so a run
killed at any moment and restarted with the same command ends as an uninterrupted one would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from rare_tasks.core import workdir
from rare_tasks.core.checkpoints import GroupCheckpoints
from rare_tasks.core.config import ConfigError, check
from rare_tasks.core.progress import log
from rare_tasks.core.report import RunReport
from rare_tasks.core.steps import chunk_bounds, eval_steps
from rare_tasks.lm import config as lm_config
from rare_tasks.lm import data, hf, ladder, memory, sharding
from rare_tasks.lm.model import Model, ModelSpec, Params
from rare_tasks.lm.report import pretraining as report
from rare_tasks.lm.trainer import Trainer, TrainSpec

CHECKPOINTS_DIR = "checkpoints"
RUN_FILE = "run.json"
FILES = (CHECKPOINTS_DIR, RUN_FILE, data.TOKENIZER_FILE, *report.FILES)
METRICS_KEY = ("member", "step")
# Called after every chunk with the step reached; a test raises from it to simulate a kill.
ChunkHook = Callable[[int], None]
# make_loop(state, step, checkpoints): the chunk loop of a program from its state at a step.
LoopFactory = Callable[[Any, int, GroupCheckpoints], "Loop"]


def run(config: ml_collections.ConfigDict, workdir_path: str | Path, overwrite: bool = False,
        run_files: Sequence[str] = FILES, devices: Sequence[jax.Device] | None = None,
        chunk_hook: ChunkHook | None = None) -> RunReport:
  """Trains (or resumes, or only reports) the study of `config` in `workdir_path`."""
  start = time.perf_counter()
  devices = list(devices) if devices is not None else jax.devices()
  # 1. The config and everything derived from it, checked before any compute.
  c = lm_config.resolve(config, devices[0].platform)
  check(not c.model.init_from or len(c.init_seeds) == 1, "init_seeds", c.init_seeds,
        "one seed with model.init_from (every member would start from the same checkpoint)")
  lm_config.check_mesh(c, len(devices))
  members = len(c.init_seeds)
  member_split = c.mesh.members or sharding.member_axis_size(members, len(devices), c.mesh.fsdp)
  mesh = sharding.make_mesh(devices, member_split, c.mesh.fsdp)
  lm_config.check_batch(c, sharding.batch_split(mesh), len(devices))
  source = data.source_of(c)
  spec = model_spec(c, source.vocab_size)
  init_params = initial_params(c, spec)
  info = run_info(c, spec, source, mesh)
  trainer = Trainer(Model(spec), train_spec(c), members, mesh)  # traced, not compiled
  info["memory"] = memory.check_fits(c.model.preset, trainer.abstract_state,
                                     info["params"]["total"], members, devices)
  # 2. The work directory.
  wd = workdir.prepare(workdir_path, c, overwrite, defaults=lm_config.base_config(),
                       run_files=run_files, not_identity=lm_config.NOT_IDENTITY)
  keep_text(wd, source, info)
  p = info["params"]
  log.info("%s %s: %s parameters (%s non-embedding; the ladder counts it %s), %d member(s), "
           "mesh %s; %s", c.model.preset, c.model.block, f"{p['total']:,}",
           f"{p['non_embedding']:,}", ladder.size_name(p["nominal"]), members,
           dict(mesh.shape), info["memory"])
  # 3. Training.
  trained = train(c, wd, source, trainer, chunk_hook, init_params=init_params)
  # 4. The report.
  summary = report.write(wd, c, info, workdir.read_metrics(wd, METRICS_KEY))
  return RunReport(wd, trained, time.perf_counter() - start, summary)


def model_spec(c: ml_collections.ConfigDict, vocab_size: int) -> ModelSpec:
  """The decoder of a resolved config over a source's vocabulary (for real text, the
  tokenizer's size padded to a multiple of 128; for the synthetic source, data.vocab_size)."""
  m = c.model
  return ModelSpec(lm_config.shape_of(c), vocab_size, block=m.block, dtype=m.dtype,
                   tie_embeddings=m.tie_embeddings, remat=m.remat, attention=m.attention)


def checkpoint_of(c: ml_collections.ConfigDict) -> tuple[Model, Params] | None:
  """model.init_from's checkpoint (None for a random init); ConfigError naming the field for
  one that cannot be read."""
  if not c.model.init_from:
    return None
  try:
    return hf.load(c.model.init_from)
  except ConfigError as e:  # name the field that pointed at the checkpoint
    raise ConfigError(f"config.model.init_from = {c.model.init_from!r}: {e}") from None


def initial_params(c: ml_collections.ConfigDict, spec: ModelSpec,
                   checkpoint: tuple[Model, Params] | None = None) -> Params | None:
  """The parameters of model.init_from's checkpoint (read here unless given), refused unless
  the run's decoder can hold them; None for a random init."""
  if not c.model.init_from:
    return None
  model, params = checkpoint if checkpoint is not None else checkpoint_of(c)
  hf.check_compatible(model.spec, spec, c.model.init_from)
  return params


def keep_text(wd: Path, source: data.TextSource, info: dict[str, Any]) -> None:
  """run.json, and for real text the tokenizer, in the work directory; a run resumed on a
  corpus that changed since its checkpoints were written is refused."""
  old = workdir.read_json(wd / RUN_FILE)
  if old is not None and (wd / CHECKPOINTS_DIR).exists():
    data.check_unchanged(source, old.get("source") or {})
  data.keep_tokenizer(source, wd)
  workdir.write_text(wd / RUN_FILE, json.dumps(info, indent=2, sort_keys=True) + "\n")


def train_spec(c: ml_collections.ConfigDict) -> TrainSpec:
  t = c.train
  return TrainSpec(steps=t.steps, learning_rate=t.learning_rate, warmup_steps=t.warmup_steps,
                   final_lr_fraction=t.final_lr_fraction, weight_decay=t.weight_decay, b1=t.b1,
                   b2=t.b2, eps=t.eps, grad_clip=t.grad_clip, z_loss=t.z_loss)


def run_info(c: ml_collections.ConfigDict, spec: ModelSpec, source: data.TextSource,
             mesh) -> dict[str, Any]:
  """What a run derives from its config: parameter counts, FLOPs, the source, the mesh."""
  preset = ladder.PRESETS[c.model.preset]
  total = ladder.total_params(spec.shape, spec.vocab_size, spec.block, spec.tie_embeddings)
  return {
      "params": {"total": total, "non_embedding": ladder.non_embedding_params(spec.shape,
                                                                              spec.block),
                 "nominal": preset.nominal_size(spec.block),
                 "nominal_counts": f"non-embedding + one {ladder.NAMING_VOCAB}-row embedding"},
      "flops_per_token": ladder.flops_per_token(spec.shape, spec.vocab_size, c.data.seq_len,
                                                spec.block),
      "tokens_per_step": c.train.batch_size * c.data.seq_len,
      "source": source.describe(),
      "loss_floor": source.loss_floor(),
      "mesh": dict(mesh.shape),
      "platform": mesh.devices.flat[0].platform,
  }


def train(c: ml_collections.ConfigDict, wd: Path, source: data.TextSource, trainer: Trainer,
          chunk_hook: ChunkHook | None = None, make_loop: LoopFactory | None = None,
          checkpoints: str = CHECKPOINTS_DIR, recorded: Callable[[], int] | None = None,
          init_params: Params | None = None) -> int:
  """Trains to train.steps from the latest checkpoint; returns the steps run (0 if finished).

  make_loop(state, step, checkpoints) builds the chunk loop (default: `Loop`); recorded()
  counts the members whose final record metrics.jsonl holds (default: this study's); fewer than the
  program's members at a finished checkpoint means a damaged metrics.jsonl: the end is
  measured again. A fresh start begins from init_params (every member) when given, else from
  the members' init seeds.
  """
  steps = c.train.steps
  if make_loop is None:
    def make_loop(state, step, ckpt):
      return Loop(c, wd, source, trainer, ckpt, state, step)
  if recorded is None:
    def recorded():
      return len({r["member"] for r in workdir.read_metrics(wd, METRICS_KEY)
                  if r["step"] == steps})
  ckpt = GroupCheckpoints(wd / checkpoints)
  try:
    latest = ckpt.latest_step()
    if latest == steps:
      if recorded() < trainer.num_members:
        state = restore(ckpt, trainer)
        loop = make_loop(state, steps, ckpt)
        loop.write(steps, None, loop.measure(state))
      return 0
    if latest is None:
      step = 0
      state = (trainer.init(np.asarray(c.init_seeds)) if init_params is None
               else trainer.start_from(init_params))
    else:
      state, step = restore(ckpt, trainer), int(latest)
      log.info("resuming from the checkpoint at step %d", step)
    return make_loop(state, step, ckpt).run(chunk_hook)
  finally:
    ckpt.close()


def restore(ckpt: GroupCheckpoints, trainer: Trainer):
  """The trainer's state at the latest checkpoint, on the trainer's mesh."""
  like = {"state": trainer.abstract_state, "data_position": np.zeros((), np.int64)}
  restored = ckpt.restore(like)
  assert int(restored["data_position"]) == ckpt.latest_step()
  return restored["state"]


class Loop:
  """The chunk loop of one program: dispatch, evaluate, record, checkpoint, report progress.

  A study that trains more than the text (the injection study) overrides `heads` (what each
  member's rows start with), `measure` (its evaluation, dispatched at once and read when
  written) and `records` (the metrics.jsonl records of one evaluation).
  """

  def __init__(self, c, wd: Path, source: data.TextSource, trainer: Trainer,
               ckpt: GroupCheckpoints, state, step: int):
    self.c, self.wd, self.source, self.trainer, self.ckpt = c, wd, source, trainer, ckpt
    self.state, self.step = state, step
    mesh = trainer.mesh
    self.batch_sharding = sharding.batch_sharding(mesh, leading=1)
    self.val_rows = source.validation(c.data.validation_rows, sharding.batch_sharding(mesh))
    self.rows_per_eval = _rows_per_eval(c.data.validation_rows, c.train.batch_size,
                                        sharding.batch_split(mesh))
    self.tokens_per_step = c.train.batch_size * c.data.seq_len
    self.floor = source.loss_floor()
    self._clock = (time.perf_counter(), step)

  def heads(self, first_step: int, num_steps: int) -> jax.Array | None:
    """Per-member heads of the rows of these steps (None: every member trains on the text)."""
    return None

  def measure(self, state) -> Any:
    """The evaluation at a step: each member's validation loss (P,)."""
    return self.trainer.evaluate(state, self.val_rows, self.rows_per_eval)

  def run(self, chunk_hook: ChunkHook | None) -> int:
    c, first = self.c, self.step
    evals = set(eval_steps(c.train.steps, c.eval_every))
    parts: list[dict[str, jax.Array]] = []
    pending = None
    last_save = time.perf_counter()
    for bound in [b for b in chunk_bounds(c.train.steps, c.eval_every,
                                          c.train.steps_per_dispatch) if b > self.step]:
      batches = self.source.train_batches(self.step, bound - self.step, c.train.batch_size,
                                          self.batch_sharding)
      heads = self.heads(self.step, bound - self.step)
      self.state, chunk_parts = self.trainer.chunk(self.state, batches, heads)
      parts.append(chunk_parts)
      self.step = bound
      if bound in evals:
        measured = self.measure(self.state)
        if pending is not None:  # the previous evaluation is written while this chunk runs
          self.write(*pending)
        pending, parts = (bound, parts, measured), []
        if bound == c.train.steps or time.perf_counter() - last_save >= c.checkpoint_interval_s:
          self.write(*pending)
          pending = None
          self.ckpt.save(bound, {"state": self.state, "data_position": np.asarray(bound)})
          last_save = time.perf_counter()
      if chunk_hook is not None:
        chunk_hook(bound)
    return self.step - first

  def write(self, step: int, parts: list[dict[str, jax.Array]] | None, measured: Any) -> None:
    """Appends the records of the evaluation at `step`, and a progress line."""
    measured = jax.device_get(measured)
    now, (then, since) = time.perf_counter(), self._clock
    self._clock = (now, step)
    rate = (step - since) * self.tokens_per_step / max(now - then, 1e-9)
    host = None if not parts else {
        k: np.concatenate([np.asarray(jax.device_get(p[k])) for p in parts])
        for k in parts[0]}
    records = self.records(step, host, measured, rate)
    workdir.append_metrics(self.wd, records)
    total = self.c.train.steps
    eta = (total - step) * self.tokens_per_step / rate if rate > 0 else float("nan")
    log.info("step %d/%d | val loss %s | %.3g tokens/s (x%d members) | ETA %.0f s", step, total,
             " ".join(f"{r['val_loss']:.3f}" for r in records), rate, len(records), eta)

  def records(self, step: int, host: dict[str, np.ndarray] | None, measured: Any,
              rate: float) -> list[dict[str, Any]]:
    """One record per member: its losses at `step` and the training since the last record."""
    val = np.asarray(measured)
    return [{"member": m, "init_seed": int(seed), **self.member_record(m, step, host, val, rate)}
            for m, seed in enumerate(self.c.init_seeds)]

  def member_record(self, m: int, step: int, host: dict[str, np.ndarray] | None,
                    val: np.ndarray, rate: float) -> dict[str, Any]:
    """What every study records of member m at `step`: tokens, validation loss and its gap
    to the floor, speed, learning rate, and the training since the last record (None after
    a re-measured end, which trained nothing)."""
    r = {"step": int(step), "tokens": int(step * self.tokens_per_step),
         "val_loss": float(val[m]), "tokens_per_s": rate,
         "model_tokens_per_s": rate * len(self.c.init_seeds),
         "learning_rate": float(self.trainer.learning_rate(step - 1))}
    r["val_gap"] = None if self.floor is None else r["val_loss"] - self.floor
    if host is None:
      r.update(train_loss=None, train_z_loss=None, grad_norm=None)
    else:
      r.update(train_loss=float(np.mean(host["ce"][:, m])),
               train_z_loss=float(np.mean(host["z_loss"][:, m])),
               grad_norm=float(host["grad_norm"][-1, m]))
    return r


def _rows_per_eval(rows: int, batch_size: int, split: int) -> int:
  """Validation rows per evaluated batch: at most the training batch, a divisor of `rows`
  that the mesh splits evenly."""
  best = split
  for n in range(split, min(rows, batch_size) + 1, split):
    if rows % n == 0:
      best = n
  return best
