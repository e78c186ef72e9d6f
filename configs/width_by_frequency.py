"""The width x frequency study (docs/science.md, "The synthetic setting"): which encoder widths
learn a rare task at which training frequency, measured beside the closed-form optimum and its
critical width.

Presets (wall time on a 2-core CPU):
  default  6 widths (4 to 128) x 6 rare frequencies x 2 seeds, 8000 steps: 101 s; it reproduces
           the closed form's learned/not-learned map in all 72 cells.
  :smoke   8 tasks of 4 features, widths 2, 8 and 32 x 3 frequencies, 600 steps: about 20 s.
Any field can be overridden on the command line, e.g. `--config.train.steps=20000` or
`--config.grid.width=(16,64)`.
"""

from rare_tasks.core.config import study_preset
from rare_tasks.synthetic.config import linear_study_config

PRESETS = ("default", "smoke")


def get_config(preset: str = "default"):
  preset = study_preset("width_by_frequency", preset, PRESETS)
  c = linear_study_config()
  c.train.learning_rate = 3e-3
  c.train.schedule = "cosine"
  c.train.final_lr_fraction = 0.01
  # Frequencies placed so that the rare task's critical width (121, 87, 46, 23, 11, 2) falls
  # between grid widths: each cell is clearly above or below it.
  c.grid.width = (4, 8, 16, 32, 64, 128)
  c.grid.frequency = (3e-4, 3e-3, 1e-2, 2.4e-2, 5.7e-2, 0.3)
  c.grid.seed = (0, 1)
  c.train.steps = 8000
  c.eval_every = 500
  if preset == "smoke":
    c.task.num_tasks = 8
    c.task.block_size = 4
    c.grid.width = (2, 8, 32)
    c.grid.frequency = (1e-3, 3e-2, 0.2)
    c.grid.seed = (0,)
    c.train.steps = 600
    c.eval_every = 200
    c.eval_samples = 1024
  return c
