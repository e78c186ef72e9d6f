"""A trained member of a pretraining run exported as a Hugging Face OLMo-2 checkpoint, to
evaluate it in the HF ecosystem (`Olmo2ForCausalLM.from_pretrained`).

  python -m experiments.export_hf --workdir=DIR --member=0 --out=DIR/hf/member0

The member's parameters come from the run's latest checkpoint, restored onto one device; the
folder gets config.json and model.safetensors (rare_tasks.lm.hf.save), and for a run on real
text the run's tokenizer.json, with its end-of-text and padding ids in config.json.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import jax

from rare_tasks.core import workdir
from rare_tasks.core.checkpoints import GroupCheckpoints
from rare_tasks.core.config import ConfigError
from rare_tasks.lm import config as lm_config
from rare_tasks.lm import data, hf, sharding, specs
from rare_tasks.lm.data import tokenizer as tokenizers
from rare_tasks.lm.model import Model
from rare_tasks.lm.program import restore
from rare_tasks.lm.trainer import Trainer, trained_params


def export(workdir_path: str | Path, member: int, out: str | Path) -> tuple[Path, int]:
  """Writes member `member` of the pretraining run in `workdir_path` to `out`; returns the
  folder and the step of the checkpoint it came from. ConfigError for a work directory that is
  not a pretraining run with a checkpoint, or a member it does not have."""
  wd = Path(workdir_path)
  if not (wd / workdir.CONFIG_FILE).is_file():
    raise ConfigError(f"--workdir = {str(wd)!r}: no {workdir.CONFIG_FILE}; allowed: the work "
                      "directory of an lm_pretrain run")
  c = workdir.load_config(wd, lm_config.base_config())
  if c.study not in lm_config.STUDIES:
    raise ConfigError(f"--workdir = {str(wd)!r}: a {c.study!r} run; allowed: an lm_pretrain run")
  members = len(c.init_seeds)
  if not 0 <= member < members:
    raise ConfigError(f"--member = {member}: allowed: 0 .. {members - 1} (the run's members)")
  c = lm_config.resolve(c, jax.devices()[0].platform)
  info = workdir.read_json(wd / specs.RUN_FILE) or {}
  spec = specs.model_spec(c, (info.get("source") or {}).get("vocab_size", c.data.vocab_size))
  mesh = sharding.make_mesh(jax.devices()[:1], 1, 1)
  trainer = Trainer(Model(spec), specs.train_spec(c), members, mesh)
  ckpt = GroupCheckpoints(wd / specs.CHECKPOINTS_DIR)
  try:
    step = ckpt.latest_step()
    if step is None:
      raise ConfigError(f"--workdir = {str(wd)!r}: no checkpoint yet; allowed: a run that has "
                        "written one")
    state = restore(ckpt, trainer)
  finally:
    ckpt.close()
  out = Path(out)
  extra = {}
  tokenizer_file = wd / data.TOKENIZER_FILE
  if tokenizer_file.is_file():
    tok = tokenizers.from_json(tokenizer_file.read_text(encoding="utf-8"), str(tokenizer_file))
    extra = {"eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id}
  hf.save(out, Model(spec), trained_params(state, member), extra=extra)
  if tokenizer_file.is_file():
    shutil.copyfile(tokenizer_file, out / data.TOKENIZER_FILE)
  return out, int(step)
