"""The injection study on one GPU: the paper's two smallest sizes, 4M (d 64, 8 layers) and 20M
(d 192, 16 layers), with their 50,304-token vocabulary, pretrained on the built-in synthetic
background with T_CMP injected at five frequencies (PAPER.md sections 3 and 5).

Per size one ensemble of 6 members (5 frequencies and the control) trains 600 steps of 64 rows
of 512 tokens (19.7M tokens per member) in bfloat16. Planned from the ladder's FLOP counts for
one H100/H200-class GPU: 4M at 25.6 MFLOP/token and 20M at 134 MFLOP/token make 1.9e16 FLOP in
all, about 3 minutes at 10% of the bfloat16 peak (the 4M size's 64-wide matmuls run far below
it), within 5 minutes with compilation. Not yet measured on a GPU.
Frequencies per sequence 0.2 .. 0.0125 give 60 .. 3.75 exposures of each of the 128 train
instances (p = 16), the range over which the CPU default separates its sizes.

  python -m experiments.main --config=configs/lm_gpu.py --workdir=workdirs/lm_gpu
"""

from rare_tasks.core.config import study_preset
from rare_tasks.lm.grid_config import base_config

PRESETS = ("default",)


def get_config(preset: str = "default"):
  study_preset("lm_gpu", preset, PRESETS)
  c = base_config()
  c.grid.size = ("4M", "20M")
  c.grid.frequency = (0.2, 0.1, 0.05, 0.025, 0.0125)
  c.grid.task = ("comparison",)
  c.injection.unit = "per_sequence"
  c.task.num_symbols = 16
  c.data.vocab_size = 50_304
  c.data.seq_len = 512
  c.data.validation_rows = 256
  c.train.batch_size = 64
  c.train.steps = 600
  c.train.warmup_steps = 60
  c.train.steps_per_dispatch = 50
  c.eval_every = 50
  return c
