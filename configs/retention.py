"""Injection and retention (PAPER.md section 2, figure 4): the rare task withheld, then injected in
bursts every `gap` updates at a matched long-run frequency, its signal tracked after every step.

A narrow encoder's rare signal spikes at each burst and decays before the next (the common tasks'
gradients overwrite it); an encoder past the critical width keeps it and it ratchets up. At equal
long-run frequency, larger gaps leave more time to forget.

Presets: `configs/retention.py` (a few minutes on a laptop CPU) and `configs/retention.py:smoke`
(under a minute).
"""

from rare_tasks.core.config import study_preset
from rare_tasks.synthetic.config import linear_study_config

PRESETS = ("default", "smoke")


def get_config(preset: str = "default"):
  preset = study_preset("retention", preset, PRESETS)
  c = linear_study_config()
  # A small constant learning rate: at 3e-3 Adam's first burst (the rare head's second moment is
  # still zero) overshoots far past the optimum and the wide model's ratchet weakens.
  c.train.learning_rate = 5e-4
  c.train.schedule = "constant"
  # Long-run frequency 1/64: the rare task's critical width is 32, and the optimum's rare
  # explained variance is 0.37 at width 32, 0.55 at 64 and 1.0 at 112. Bursts of 4 x gap
  # examples; under Adam the peak comes 10-25 updates after a burst, so gaps below 16 behave
  # like steady exposure.
  c.grid.rare_frequency = (1 / 64,)
  c.grid.width = (8, 32, 64, 112)
  c.grid.gap = (1, 16, 32, 64)
  c.grid.seed = (0, 1)
  c.injection.mode = "bursts"
  c.injection.withhold_steps = 3072  # the common tasks are learned first
  c.train.steps = 6144  # 48 bursts at the largest gap
  c.eval_every = 256
  c.measure.trace_rare = True
  if preset == "smoke":
    c.task.num_tasks = 8
    c.task.block_size = 4
    c.grid.rare_frequency = (1 / 32,)
    c.grid.width = (4, 16)
    c.grid.gap = (1, 16)
    c.grid.seed = (0,)
    c.injection.withhold_steps = 200
    c.train.steps = 520
    c.eval_every = 100
    c.eval_samples = 1024
  return c
