"""The injection study at the paper's scale (PAPER.md sections 3 and 5): the 4M, 20M, 300M, 1B
and 4B decoders, 50,000 steps of 2,048 rows of 2,048 tokens (210B tokens per model), T_CMP and
T_ADD over p = 100 symbols (10,000 instances each, 5,000 injected), eight frequencies per token.
Cluster scale: see the estimate below.

Frequencies. The paper's range, 7.8e-3 down to 2.4e-8 ("roughly 1K instances per batch to 1
instance every 10 batches"), does not reconcile with one unit. Per token, at 4.2M tokens per
batch, its low end 2.4e-8 is exactly one instance every 10 batches and 1K per batch is 2.4e-4,
but 7.8e-3 would be 33K instances per batch, and a batch of 2,048 rows holds at most 2,048 (one
instance per row): 1 / seq_len = 4.9e-4 per token is the cap. So the grid spans 2^-12 (1,024
instances per batch) down by factors of 4 to 2^-24 (a quarter instance per batch), and 0.1 x
2^-22 (one every 10 batches), per token; every run's manifests (injections/) let any other unit
be recomputed.

Cost. Per token 35 MFLOP (4M), 190 MFLOP (20M), 2.3 GFLOP (300M), 7.9 GFLOP (1B), 25 GFLOP (4B)
(6 N_nonemb + 6 d V + 12 L d T); 9 models per size (8 frequencies and the control) x 2 tasks
x 210B tokens make about 1.4e23 FLOP, about 95,000 H100-hours at 40% of the bfloat16 peak; the
4B and 1B sizes are 93% of it. Sizes whose ensemble does not fit the devices train one model per
program with FSDP (`--config.mesh.fsdp=<devices>` to ask for it). Real text (Dolma) plugs in
through `config.data.corpus`; until then the background is the built-in synthetic language.

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
