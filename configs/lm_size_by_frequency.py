"""Rare tasks injected into pretraining on a laptop CPU (docs/science.md, "The language-model
study"; paper Figs. 5 and 6): three decoder sizes pretrained on the built-in synthetic background
with the comparison task T_CMP injected at five frequencies, each size's sweep one ensemble.
Formerly lm_width_by_frequency (configs/lm_width_by_frequency.py still runs and says so).

Default (3 minutes on a 2-core CPU): cpu_d16 (1 layer), cpu_d32 and cpu_d64 (2 layers), two seeds
each, 1,000 steps of 32 rows of 16 tokens (512K tokens per model) on an order-1 Zipfian Markov
background of 511 symbols; T_CMP over p = 16 symbols (128 train, 128 test instances) at 0.4,
0.28, 0.2, 0.14 and 0.1 instances per sequence (100, 70, 50, 35 and 25 exposures of each train
instance) and a control at 0. Measured: the smallest learned frequency is none for cpu_d16
(0.70 train accuracy at 0.4), 0.14 for cpu_d32 and 0.1 for cpu_d64, and every size learns its
frequencies in frequency order (docs/language_models.md, "What the CPU default shows"). How this
setting was found: docs/lab_notes.md, "The language-model injection study".

Presets (wall time on a 2-core CPU):
  :smoke  two sizes, two frequencies, 150 steps: the pipeline end to end in under a minute.
  :gap    cpu_d64 at 0.125 instances per sequence (4 per batch) with bursts every 1, 2, 4 and
          8 updates (paper Fig. 6b: N instances every N batches): final train accuracy 0.98,
          0.95, 0.91 and 0.74, in 71 s.
"""

from rare_tasks.core.config import study_preset
from rare_tasks.lm.grid_config import base_config

PRESETS = ("default", "smoke", "gap")


def get_config(preset: str = "default"):
  preset = study_preset("lm_size_by_frequency", preset, PRESETS)
  c = base_config()
  c.grid.size = ("cpu_d16", "cpu_d32", "cpu_d64")
  c.grid.frequency = (0.4, 0.28, 0.2, 0.14, 0.1)
  c.grid.task = ("comparison",)
  c.grid.seed = (0, 1)
  c.injection.unit = "per_sequence"
  c.task.num_symbols = 16
  c.data.seq_len = 16
  c.data.context_classes = 1
  c.train.batch_size = 32
  c.train.steps = 1000
  c.train.warmup_steps = 100
  c.eval_every = 100
  c.checkpoint_interval_s = 60.0
  if preset == "smoke":
    c.grid.size = ("cpu_d16", "cpu_d32")
    c.grid.seed = (0,)
    c.grid.frequency = (0.4, 0.1)
    c.train.steps = 150
    c.train.warmup_steps = 20
    c.train.steps_per_dispatch = 25
    c.eval_every = 50
    c.data.validation_rows = 128
  elif preset == "gap":
    c.grid.size = ("cpu_d64",)
    c.grid.seed = (0,)
    c.grid.frequency = (0.125,)
    c.grid.gap = (1, 2, 4, 8)
    c.injection.schedule = "bursts"
  return c
