"""Complexity against frequency (docs/science.md, "Complexity against frequency"): which tasks
are learned, and in what order, when a frequent task is complex and a rare one simple.

Tasks alternate between complex (beta = 0: variance spread evenly over all 16 features) and simple
(beta = 3: nearly all of it in the top feature); spectra have unit trace, so every task has the
same total variance and a complex task has little per feature. The most frequent task is complex
and the rare one simple. Utility (frequency x eigenvalue) predicts the rare simple task is learned
before the frequent complex one, at a narrow width and earlier in training; frequency alone
predicts the opposite. summary.md and learning_order.csv compare the measured order with both.

Presets (wall time on a 2-core CPU):
  default  widths 8, 24 and 64 x 2 seeds, 2000 steps: 22 s.
  :smoke   widths 8 and 64, one seed, 300 steps: seconds.
How the widths were chosen: docs/lab_notes.md, "The complexity study".
"""

from rare_tasks.core.config import study_preset
from rare_tasks.synthetic.config import base_config

PRESETS = ("default", "smoke")


def get_config(preset: str = "default"):
  preset = study_preset("complexity", preset, PRESETS)
  c = base_config()
  c.task.num_tasks = 8
  c.task.block_size = 16
  c.task.num_rare = 1
  # Frequencies 0.236, 0.167, 0.137, 0.118, 0.106, 0.097, 0.089 and the rare task's 0.05.
  c.task.common_exponent = 0.5
  c.injection.frequency = 0.05
  c.task.beta = (0.0, 3.0, 0.0, 3.0, 0.0, 3.0, 0.0, 3.0)
  c.task.spectrum_normalization = "trace"
  c.train.learning_rate = 3e-4
  c.train.schedule = "constant"
  c.train.batch_size = 256
  # Width 8 keeps the four simple tasks' top features (the rare one included) and drops the
  # most frequent task; width 64 learns every task (the last one at width 59).
  c.grid.width = (8, 24, 64)
  c.grid.frequency = (0.05,)
  c.grid.seed = (0, 1)
  c.train.steps = 2000
  c.eval_every = 10
  c.eval_samples = 2048
  if preset == "smoke":
    c.grid.width = (8, 64)
    c.grid.seed = (0,)
    c.train.steps = 300
    c.eval_every = 20
    c.eval_samples = 512
  return c
