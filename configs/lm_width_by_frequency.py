"""Rare tasks injected into pretraining on a laptop CPU (PAPER.md sections 3 and 5; paper
Figs. 5 and 6): four decoder sizes pretrained on the built-in synthetic background with the
comparison task T_CMP injected at five frequencies, each size's sweep one ensemble.

Default (3 minutes on 2 cores): cpu_d16 (1 layer), cpu_d32 and cpu_d64 (2 layers), two seeds
each, 1,000 steps of 32 rows of 16 tokens (512K tokens per model) on an order-1 Zipfian Markov
background of 511 symbols; T_CMP over p = 16 symbols (128 train, 128 test instances) at 0.4,
0.28, 0.2, 0.14 and 0.1 instances per sequence (100, 70, 50, 35 and 25 exposures of each train
instance) and a control at 0. Measured: the smallest learned frequency is none for cpu_d16
(0.70 train accuracy at 0.4), 0.14 for cpu_d32 and 0.1 for cpu_d64, and every size learns its
frequencies in frequency order (README).

What was tried to find the smallest setting that shows it (d16 and d128 first, then the four
CPU sizes; final train accuracy):
- rows of 32, the order-2 background (data.context_classes = 4), 600 steps, 0.4 .. 0.05:
  cpu_d128 learns only 0.4 (0.77 at 0.2), cpu_d16 nothing; four sizes at rows of 32 and enough
  steps to grade them would take 8 minutes or more;
- p = 8 (400 steps), a learning rate of 3e-3 for every size, twice the ladder's rate, a batch
  of 16 for twice the steps: no better separation (at 3e-3 cpu_d16 stops learning);
- the order-1 background: cpu_d128 at 0.2 goes from 0.77 to 0.90;
- rows of 16: half the cost and twice the task's share of the tokens, the decisive change;
- 600 steps at rows of 16: the three larger sizes end within 0.05 of 0.9 at 0.2, learned at one
  seed and not at another;
- cpu_d128 as a fourth size (one seed): smallest learned 0.14 against cpu_d64's 0.1 at that
  seed. At p = 16 the top of the ladder saturates, and the seed noise near the threshold (0.6
  to 0.97 train accuracy at 0.1 per sequence) is larger than the d64-d128 difference; two seeds
  of three sizes (3 minutes) give seed means for less than one seed of four (4 minutes).

Presets:
  :smoke  two sizes, two frequencies, 150 steps: the pipeline end to end in under a minute.
  :gap    cpu_d64 at 0.125 instances per sequence (4 per batch) with bursts every 1, 2, 4 and
          8 updates (paper Fig. 6b: N instances every N batches), a few minutes.
"""

from rare_tasks.core.config import study_preset
from rare_tasks.lm.grid_config import base_config

PRESETS = ("default", "smoke", "gap")


def get_config(preset: str = "default"):
  preset = study_preset("lm_width_by_frequency", preset, PRESETS)
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
