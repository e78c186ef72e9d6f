"""The injection study on one GPU (docs/language_models.md, "On a GPU and at the paper's scale"):
the paper's two smallest sizes, 4M (d 64, 8 layers) and 20M (d 192, 16 layers), with their
50,304-token vocabulary, pretrained on the built-in synthetic background with T_CMP injected at
five frequencies per sequence, 0.2 down to 0.0125.

Per size one ensemble of 6 members (5 frequencies and the control) trains 600 steps of 64 rows
of 512 tokens in bfloat16. Cost: planned from the ladder's FLOP counts at about 3 minutes on one
H100/H200-class GPU, within 5 minutes with compilation; not yet measured on a GPU. The plan is
in docs/lab_notes.md, "The injection study on one GPU".

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
