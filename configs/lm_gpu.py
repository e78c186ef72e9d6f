"""The injection study on one GPU (docs/language_models.md, "On a GPU and at the paper's scale"):
the CPU default's design at the paper's two smallest sizes, 4M (d 64, 8 layers) and 20M (d 192,
16 layers), with their 50,304-token vocabulary. The two differ in depth as well as width: those
are their depths in the paper's ladder, so this pair does not hold depth fixed as the CPU
ladder does (say so when reading it).

As on the CPU: T_CMP over p = 8 symbols at six frequencies per sequence, 0.8 down to 0.025 (30
exposures of each of the 32 train instances at the lowest), three seeds, one learning rate for
both sizes (0.008, the ladder's at 20M), learned = train accuracy >= 0.9 over the last 3
evaluations. Per size one ensemble of 21 members (6 frequencies x 3 seeds and a control per
seed) trains 1,200 steps of 32 rows of 128 tokens (4.9M tokens per member) in bfloat16.

Cost, planned from the ladder's FLOP counts: about 1.5e16 FLOP, 2 to 3 minutes on one
H100-class GPU with compilation; `benchmarks/lm_gpu_study.sh` runs it under a 5-minute limit.

  python -m experiments.main --config=configs/lm_gpu.py --workdir=workdirs/lm_gpu
"""

from rare_tasks.core.config import study_preset
from rare_tasks.lm.grid_config import base_config

PRESETS = ("default",)


def get_config(preset: str = "default"):
  study_preset("lm_gpu", preset, PRESETS)
  c = base_config()
  c.grid.size = ("4M", "20M")
  c.grid.frequency = (0.8, 0.4, 0.2, 0.1, 0.05, 0.025)
  c.grid.task = ("comparison",)
  c.grid.seed = (0, 1, 2)
  c.injection.unit = "per_sequence"
  c.task.num_symbols = 8
  c.data.vocab_size = 50_304
  c.data.seq_len = 128
  c.data.validation_rows = 256
  c.train.batch_size = 32
  c.train.steps = 1200
  c.train.warmup_steps = 100
  c.train.learning_rate = 0.008
  c.train.steps_per_dispatch = 100
  c.eval_every = 100
  return c
