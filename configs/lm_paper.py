"""The injection study at the paper's scale (docs/science.md, "The language-model study"): the
4M, 20M, 300M, 1B and 4B decoders, 50,000 steps of 2,048 rows of 2,048 tokens (210B tokens per
model), T_CMP and T_ADD over p = 100 symbols (10,000 instances each, 5,000 injected), eight
frequencies per token.

Frequencies. The paper's range does not reconcile with one unit (docs/science.md, "Frequency and
its unit"): the grid spans 2^-12 per token (1,024 instances per batch) down by factors of 4 to
2^-24 (a quarter instance per batch), and 0.1 x 2^-22 (one every 10 batches); every run's
manifests (injections/) let any other unit be recomputed.

Cost: about 1.4e23 FLOP, about 95,000 H100-hours at 40% of the bfloat16 peak, the 4B and 1B
sizes 93% of it (per-size counts in docs/lab_notes.md, "The paper's scale"): cluster scale.
Sizes whose ensemble does not fit the devices train one model per program with FSDP
(`--config.mesh.fsdp=<devices>` to ask for it). The background is the built-in synthetic
language unless real text is chosen through `config.data.corpus`.

  python -m experiments.main --config=configs/lm_paper.py --workdir=workdirs/lm_paper \
      --distributed
"""

from rare_tasks.core.config import study_preset
from rare_tasks.lm.grid_config import base_config

PRESETS = ("default",)


def get_config(preset: str = "default"):
  study_preset("lm_paper", preset, PRESETS)
  c = base_config()
  c.grid.size = ("4M", "20M", "300M", "1B", "4B")
  c.grid.frequency = (2.0**-12, 2.0**-14, 2.0**-16, 2.0**-18, 2.0**-20, 2.0**-22, 2.0**-24,
                      0.1 * 2.0**-22)
  c.grid.task = ("comparison", "addition")
  c.injection.unit = "per_token"
  c.task.num_symbols = 100
  c.data.vocab_size = 50_304
  c.data.seq_len = 2048
  c.data.validation_rows = 1024
  c.train.batch_size = 2048
  c.train.steps = 50_000
  c.train.warmup_steps = 2000
  c.train.steps_per_dispatch = 100
  c.eval_every = 500
  c.checkpoint_interval_s = 1800.0
  return c
