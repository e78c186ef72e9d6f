"""Neuron allocation and gradient interference (docs/science.md, "Measurements") measured for
every cell of a width x frequency grid during training: how each width divides its neurons among
the tasks, and the common-task gradient fading as wider encoders capture the common tasks (the
gradient fact).

Spectra j^-3 (beta = 3 for every task) put the common tasks' utility in their first few features,
so mid-size encoders capture it and the measured common-task gradient strength falls across the
widths; the rare task's critical width is 18 at frequency 0.01 and 4 at 0.057. Why not j^-1:
docs/lab_notes.md, "The interference study". `common_grad_strength` (interference.csv) is each
cell's common-task gradient norm relative to its own largest value so far.

Presets (wall time on a 2-core CPU):
  default  widths 4 to 128 x frequencies 0.01 and 0.057 x 2 seeds, 4000 steps: 57 s.
  :beta1   the same grid with spectra j^-1 and widths 4 to 128 by doubling: there the strength
           stays between 0.08 and 0.4 of its peak up to width 64.
  :smoke   8 tasks of 4 features, widths 2, 8 and 32, 400 steps: under a minute.
Any field can be overridden on the command line, e.g. `--config.measure.interference_samples=512`.
"""

from rare_tasks.core.config import study_preset
from rare_tasks.synthetic.config import linear_study_config

PRESETS = ("default", "beta1", "smoke")


def get_config(preset: str = "default"):
  preset = study_preset("interference", preset, PRESETS)
  c = linear_study_config()
  c.task.beta = 3.0
  c.train.learning_rate = 3e-3
  c.train.schedule = "cosine"
  c.train.final_lr_fraction = 0.01
  c.grid.width = (4, 8, 16, 32, 64, 96, 128)
  c.grid.frequency = (1e-2, 5.7e-2)
  c.grid.seed = (0, 1)
  c.train.steps = 4000
  c.eval_every = 250
  c.measure.allocation = True
  c.measure.interference = True
  c.measure.interference_samples = 256
  if preset == "beta1":
    c.task.beta = 1.0
    # Critical widths of the rare task: 46 at frequency 0.01, 11 at 0.057.
    c.grid.width = (4, 8, 16, 32, 64, 128)
  if preset == "smoke":
    c.task.num_tasks = 8
    c.task.block_size = 4
    c.grid.width = (2, 8, 32)
    c.grid.frequency = (3e-2,)
    c.grid.seed = (0,)
    c.train.steps = 400
    c.eval_every = 100
    c.eval_samples = 1024
    c.measure.interference_samples = 64
  return c
