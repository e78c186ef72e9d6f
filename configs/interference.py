"""The mechanism study (PAPER.md section 2): neuron allocation and gradient interference measured
for every cell of a width x frequency grid during training.

Why spectra j^-3 (beta = 3 for every task). Theorem 4 / Corollary 5: the common tasks' gradient
acts through the part of their covariance the encoder does not yet explain, so it weakens as a
wider encoder captures them. With spectra j^-1 (preset `beta1`) the 15 common tasks spread their
utility over all 120 of their features: every width below d = 128 leaves a large part of it
uncaptured (0.47 at width 8, 0.17 at 32, 0.06 at 64 with rare frequency 0.01), and the
common-task gradient strength at the end of training stays between 0.08 and 0.4 of its peak at
every width from 4 to 64, then vanishes at 128, where the encoder has full rank. With j^-3 the
common utility is in the first few features of each task (0.20 uncaptured at width 8, 0.03 at 32,
0.006 at 64), mid-size encoders capture it, and the measured strength falls across those widths;
the rare task's critical width is 18 at frequency 0.01 and 4 at 0.057.

`common_grad_strength` (interference.csv) is each cell's common-task gradient norm relative to
its own largest value so far: the heads start at zero, so at initialisation no task sends the
encoder any gradient and that value cannot be the reference.

Presets: `configs/interference.py` (about a minute on a laptop CPU), `:beta1` (the same grid
with spectra j^-1 and widths 4 to 128 by doubling) and `:smoke` (under a minute). Any field can
be overridden on the command line, e.g. `--config.measure.interference_samples=512`.
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
