"""Pretraining OLMo-style decoders on the built-in synthetic background language
(docs/language_models.md, "Pretraining"): the foundation the injection study builds on.

An ensemble of models of one preset (one member per init seed) trains as one compiled program on
the same text batches; every member's train and validation loss is recorded against tokens,
with the source's exact entropy floor. Any preset of the ladder runs from the same file:
`--config.model.preset=4M` on a GPU (bfloat16 there by default), or on a TPU slice with
`--config.mesh.fsdp=<devices>` for the large sizes.

Presets (wall time on a 2-core CPU):
  default  cpu_d64, two members, 2000 steps: a few minutes.
  :smoke   cpu_d32, 150 steps: under a minute, the same on 1, 2 and 8 devices; with
           `--config.data.corpus=python_stdlib` about 30 s on a fresh machine, 18 s cached.

Real text instead of the synthetic source: `--config.data.corpus=python_stdlib` (the running
Python's standard library, on every machine), or `--config.data.corpus=jsonl
--config.data.path=<Dolma shards>` with `--config.data.tokenizer=<tokenizer.json>` (else a BPE
of data.vocab_size is trained on the corpus); `--config.model.init_from=<HF checkpoint>` starts
from a released model (docs/language_models.md, "Real text" and "Hugging Face checkpoints").
"""

from rare_tasks.core.config import study_preset
from rare_tasks.lm.config import base_config

PRESETS = ("default", "smoke")


def get_config(preset: str = "default"):
  preset = study_preset("lm_pretrain", preset, PRESETS)
  c = base_config()
  c.model.preset = "cpu_d64"
  c.init_seeds = (0, 1)
  c.train.steps = 2000
  c.train.warmup_steps = 100
  c.eval_every = 200
  if preset == "smoke":
    c.model.preset = "cpu_d32"
    c.train.steps = 150
    c.train.warmup_steps = 20
    c.train.steps_per_dispatch = 25
    c.eval_every = 25
    c.data.validation_rows = 128
  return c
