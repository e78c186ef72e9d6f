"""The mechanism study (PAPER.md section 2): neuron allocation and gradient interference measured
for every cell of a width x frequency grid during training.

Presets: `configs/interference.py` (a few minutes on a laptop CPU) and
`configs/interference.py:smoke` (under a minute). Any field can be overridden on the command
line, e.g. `--config.measure.interference_samples=512`.
"""

from rare_tasks.core.config import study_preset
from rare_tasks.synthetic.config import linear_study_config

PRESETS = ("default", "smoke")


def get_config(preset: str = "default"):
  preset = study_preset("interference", preset, PRESETS)
  c = linear_study_config()
  c.train.learning_rate = 3e-3
  c.train.schedule = "cosine"
  c.train.final_lr_fraction = 0.01
  # Critical widths of the rare task: 46 at frequency 0.01, 11 at 0.057.
  c.grid.width = (4, 8, 16, 32, 64, 128)
  c.grid.rare_frequency = (1e-2, 5.7e-2)
  c.grid.seed = (0, 1)
  c.train.steps = 4000
  c.eval_every = 250
  c.measure.allocation = True
  c.measure.interference = True
  c.measure.interference_samples = 256
  if preset == "smoke":
    c.task.num_tasks = 8
    c.task.block_size = 4
    c.grid.width = (2, 8, 32)
    c.grid.rare_frequency = (3e-2,)
    c.grid.seed = (0,)
    c.train.steps = 400
    c.eval_every = 100
    c.eval_samples = 1024
    c.measure.interference_samples = 64
  return c
