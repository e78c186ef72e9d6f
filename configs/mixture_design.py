"""Mixture design (the paper's practical question; docs/synthetic.md, "Mixture design"): for each
width, the smallest rare-task frequency at which the rare task is learned within the training
budget, and the inverse, the smallest width that learns a given frequency.

The linear setting of the width x frequency study (K = 16 tasks of 8 features, common tasks at
power-law exponent 1.5). Each width's search starts at its closed-form critical frequency and
trains 8 candidate frequencies x 2 seeds per round as one ensemble. summary.md gives the fitted
slope of frequency needed against width beside the closed form's; mixture_design.csv and
min_width.csv hold the numbers. Measured: the minimum fell from 0.0775 at width 8 to 0.0085 at
width 48, at 0.94-1.00 of the closed-form critical frequency; slope -1.27 against -1.26.

Presets (wall time on a 2-core CPU):
  default  widths 8 to 48 x 2 seeds, 3000 steps per candidate: 2 min 47 s (2 rounds of 96 cells).
  :smoke   8 tasks of 4 features, widths 4, 8 and 16, one seed: seconds.
"""

from rare_tasks.core.config import study_preset
from rare_tasks.synthetic.config import linear_study_config

PRESETS = ("default", "smoke")


def get_config(preset: str = "default"):
  preset = study_preset("mixture_design", preset, PRESETS)
  c = linear_study_config()
  c.study = "mixture_design"
  c.train.learning_rate = 3e-3
  c.train.schedule = "cosine"
  c.train.final_lr_fraction = 0.01
  c.train.steps = 3000
  c.eval_every = 1000
  c.eval_samples = 2048
  c.grid.frequency = None  # searched
  c.grid.width = (8, 12, 16, 24, 32, 48)
  c.grid.seed = (0, 1)
  c.design.num_candidates = 8
  c.design.bracket_factor = 4.0
  c.design.refine_rounds = 1
  c.design.target_frequencies = (0.005, 0.01, 0.02, 0.05)
  if preset == "smoke":
    c.task.num_tasks = 8
    c.task.block_size = 4
    c.grid.width = (4, 8, 16)
    c.grid.seed = (0,)
    c.train.steps = 400
    c.eval_every = 200
    c.eval_samples = 512
    c.design.num_candidates = 4
    c.design.refine_rounds = 1
    c.design.max_expansions = 1
    c.design.target_frequencies = None
  return c
