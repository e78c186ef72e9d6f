"""Injection and retention (docs/science.md, "Retention under bursts"; paper Fig. 4): the rare
task withheld, then injected in bursts every `gap` updates at a matched long-run frequency, its
signal tracked after every step.

A narrow encoder's rare signal spikes at each burst and decays before the next (the common tasks'
gradients overwrite it); an encoder past the critical width keeps it and it ratchets up. At equal
long-run frequency, larger gaps leave more time to forget. Plain SGD at a constant 0.5 makes each
burst move the encoder visibly, and spectra j^-2 leave a wide encoder room to keep the rare
features (the rare task's critical width is 17 at frequency 1/64). Why these, and what Adam and
j^-1 did: docs/lab_notes.md, "The retention study".

Presets (wall time on a 2-core CPU):
  default  widths 8 to 112 x gaps 1, 16, 32 and 64 x 2 seeds, 6144 updates of which the first
           3072 withhold the rare task: 80 s.
  :adam    the same bursts under Adam at 5e-4, spectra j^-1 (the setting before SGD): no
           visible spike at the narrow widths.
  :smoke   8 tasks of 4 features, widths 4 and 16, gaps 1 and 32, 640 updates: under a minute.
"""

from rare_tasks.core.config import study_preset
from rare_tasks.synthetic.config import linear_study_config

PRESETS = ("default", "adam", "smoke")


def get_config(preset: str = "default"):
  preset = study_preset("retention", preset, PRESETS)
  c = linear_study_config()
  c.train.optimizer = "sgd"
  c.train.learning_rate = 0.5
  c.train.schedule = "constant"
  c.task.beta = 2.0
  # Long-run frequency 1/64: bursts of 4 x gap examples, a whole batch at gap 64.
  c.grid.frequency = (1 / 64,)
  c.grid.width = (8, 16, 32, 64, 112)
  c.grid.gap = (1, 16, 32, 64)
  c.grid.seed = (0, 1)
  c.injection.schedule = "bursts"
  c.injection.withhold_steps = 3072  # the common tasks are learned first
  c.train.steps = 6144  # 48 bursts at the largest gap
  c.eval_every = 256
  c.measure.trace_rare = True
  if preset == "adam":
    c.train.optimizer = "adam"
    # At 3e-3 Adam's first burst (the rare head's second moment is still zero) overshoots far
    # past the optimum and the wide model's ratchet weakens.
    c.train.learning_rate = 5e-4
    c.task.beta = 1.0
    # Critical width 32; the optimum's rare explained variance is 0.37 at width 32, 0.55 at 64
    # and 1.0 at 112. Under Adam the peak comes 10-25 updates after a burst, so gaps below 16
    # behave like steady exposure.
    c.grid.width = (8, 32, 64, 112)
  if preset == "smoke":
    c.task.num_tasks = 8
    c.task.block_size = 4
    c.grid.frequency = (1 / 32,)
    c.grid.width = (4, 16)
    c.grid.gap = (1, 32)
    c.grid.seed = (0,)
    c.injection.withhold_steps = 256
    c.train.steps = 640
    c.eval_every = 128
    c.eval_samples = 1024
  return c
