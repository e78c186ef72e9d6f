"""Injection and retention (PAPER.md section 2, figure 4): the rare task withheld, then injected in
bursts every `gap` updates at a matched long-run frequency, its signal tracked after every step.

A narrow encoder's rare signal spikes at each burst and decays before the next (the common tasks'
gradients overwrite it); an encoder past the critical width keeps it and it ratchets up. At equal
long-run frequency, larger gaps leave more time to forget.

Why plain SGD at a large constant rate. A burst can only move the encoder towards the rare
features through the rare head (the encoder's gradient from a rare example is D_r^T times its
error), and that head is zero when the bursts start. Under SGD the head keeps what each burst
gives it (no other task updates it), so over the first bursts it grows, and each later burst then
rotates the encoder by an amount proportional to the learning rate and to the burst's size: at
gap 64 a burst is a whole batch of rare examples. Under Adam a burst's step is normalised by the
encoder's running second moment, which the common tasks' steady gradients dominate, so one burst
moves a narrow encoder by at most about the learning rate per weight: at a stable rate (5e-4) the
narrow models' median gain is 1e-6 to 1e-3 in feature capture, no visible spike (preset `adam`,
the setting before SGD). The rate 0.5 is about the largest at which every width of the grid stays
finite; 0.65 diverges at width 32 and above.

Why beta = 2 for every task (spectra j^-2 instead of j^-1). With j^-1, the 120 common features
all carry utility, so even a width-112 encoder has no unused directions: every rare direction a
burst writes into it is read by some common head, and the common tasks push it out again (at
width 112, 0.47 of a burst's gain retained at gap 64, with j^-1). With j^-2 the common tasks'
utility is in their first few features, a wide encoder has room to keep the rare features, and
a narrow one still has none (the rare task's critical width is 17 at frequency 1/64; the
optimum's rare explained variance is 0, 0, 0.65, 0.89 and 0.99 at widths 8, 16, 32, 64, 112).

Presets: `configs/retention.py` (about two minutes on a laptop CPU), `:adam` (the same bursts
under Adam at 5e-4, spectra j^-1) and `:smoke` (under a minute).
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
