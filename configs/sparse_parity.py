"""Multitask sparse parity (Michaud et al. 2023; docs/science.md, "Multitask sparse parity")
through the width x frequency grid study: which tasks an MLP of each width learns, and in what
order.

K tasks with power-law frequencies (the last one rare, at the grid's frequencies); each example
is a one-hot task code and n random bits, labelled by the parity of its task's k secret bits.
Wider MLPs learn more tasks, from the most frequent down; summary.md and learning_order.csv show
both, and the allocation (ablation) and interference measurements run as in the linear studies.
Measured: 0.8, 2.8 and 8.8 tasks learned per cell at widths 8, 32 and 128; 96% of the pairs of
tasks learned at different evaluations were learned in order of frequency.

Presets (wall time on a 2-core CPU):
  default  12 tasks, widths 8, 32 and 128 x 2 rare frequencies x 2 seeds, 6000 steps: 45 s.
  :smoke   4 tasks of 8 bits, widths 8 and 32, one cell each, 300 steps: seconds.
"""

from rare_tasks.core.config import study_preset
from rare_tasks.synthetic.config import base_config

PRESETS = ("default", "smoke")


def get_config(preset: str = "default"):
  preset = study_preset("sparse_parity", preset, PRESETS)
  c = base_config()
  c.task.name = "sparse_parity"
  c.task.num_tasks = 12
  c.task.num_bits = 24
  c.task.parity_bits = 3
  c.task.num_rare = 1
  c.task.common_exponent = 1.0
  c.injection.frequency = 0.01
  c.model.name = "mlp"
  c.model.activation = "relu"
  c.train.optimizer = "adam"
  c.train.learning_rate = 3e-3
  c.train.batch_size = 256
  c.train.steps = 6000
  c.grid.width = (8, 32, 128)
  c.grid.frequency = (0.01, 0.04)
  c.grid.seed = (0, 1)
  c.eval_every = 250
  c.eval_samples = 2400
  # A task is learned when its cross-entropy is at most 0.1 bits (accuracy about 99%).
  c.learned.threshold = 0.1
  c.measure.allocation = True
  c.measure.interference = True
  c.measure.interference_samples = 64
  if preset == "smoke":
    c.task.num_tasks = 4
    c.task.num_bits = 8
    c.task.parity_bits = 2
    c.grid.width = (8, 32)
    c.grid.frequency = (0.05,)
    c.grid.seed = (0,)
    c.train.steps = 300
    c.eval_every = 100
    c.eval_samples = 400
  return c
