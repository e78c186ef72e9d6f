"""Rare tasks injected into pretraining on a laptop CPU (docs/language_models.md, "What the CPU
default shows"; paper Figs. 5 and 6): decoders of three widths at one depth pretrained on the
built-in synthetic background with the comparison task T_CMP injected at six frequencies over
1.5 decades, three seeds each, each size's cells one ensemble. Formerly lm_width_by_frequency
(configs/lm_width_by_frequency.py still runs and says so).

Default (6 minutes on a 2-core CPU): cpu_d16_l2, cpu_d32 and cpu_d64, all 2 layers, one
learning rate (0.015) for every size; 4,000 steps of 8 rows of 16 tokens (512K tokens per
model) on an order-1 Zipfian Markov background of 511 symbols; T_CMP over p = 8 symbols (32
train instances, the split `ordered`, so unseen and mirror pairs are both measured) at 0.8 down
to 0.025 instances per sequence (6.4 to 0.2 per batch of 8; 800 down to 25 exposures of each
train instance) and a control at 0. Learned: train accuracy >= 0.9, the mean of the last 3
evaluations; thresholds under choice accuracy are reported beside it. How this setting was
found: docs/lab_notes.md, "The language-model injection study".

Presets (wall time on a 2-core CPU):
  :smoke         two sizes, two frequencies, 150 steps: the pipeline end to end in under a minute.
  :data_scaling  the smallest and the largest size at the default's 4,000 steps and at 16,000
                 (4x; each its own schedule), at the four lowest frequencies 0.2 .. 0.025: can
                 more steps teach the small size what the large one learns? About 15 minutes.
  :depth         the depth ablation: cpu_d16 (1 layer) against cpu_d16_l2 (2 layers) and
                 cpu_d64, the default's design otherwise (5 minutes).
  :d128          the default's ladder with cpu_d128 (2 layers) on top (16 minutes).
  :answer_tokens the control task: T_CMP answering with one of two reserved tokens (which prompt
                 token is larger), so mirror pairs have opposite labels and no answer dominates.
  :addition      T_ADD alone (p = 8); :joint T_CMP and T_ADD injected together in every cell
                 (6 and 4 minutes; :answer_tokens and :stdlib 6).
  :stdlib        the default's design on real text: the running Python's standard library,
                 BPE-tokenised to 512 tokens, as the background.
  :gap           cpu_d64 at 0.125 instances per sequence (4 per batch of 32) with bursts every
                 1, 2, 4 and 8 updates (paper Fig. 6b: N instances every N batches).
  :mechanism     why the larger size keeps the task (paper Figs. 7-9): the smallest and the
                 largest size of the default's ladder, T_CMP withheld for 1,000 updates and then
                 injected in bursts every 20 updates (the paper's 100 instances every 100
                 batches, scaled to a batch of 8 rows: 8 or 4 instances a burst, 0.05 and 0.025
                 per sequence in the long run), with the gradient decomposition at every burst
                 and halfway between, the probes at every evaluation and the task loss after
                 every update (retention). About 6 minutes.
  :top_k         :mechanism's gradient decomposition on four supports (3%, 10%, 30% and all of
                 the first layer's MLP neurons), without the probes and retention.
"""

from rare_tasks.core.config import study_preset
from rare_tasks.lm.grid_config import base_config

PRESETS = ("default", "smoke", "data_scaling", "depth", "d128", "answer_tokens", "addition",
           "joint", "stdlib", "gap", "mechanism", "top_k")


def get_config(preset: str = "default"):
  preset = study_preset("lm_size_by_frequency", preset, PRESETS)
  c = base_config()
  c.grid.size = ("cpu_d16_l2", "cpu_d32", "cpu_d64")
  c.grid.frequency = (0.8, 0.4, 0.2, 0.1, 0.05, 0.025)
  c.grid.task = ("comparison",)
  c.grid.seed = (0, 1, 2)
  c.injection.unit = "per_sequence"
  c.task.num_symbols = 8
  c.data.seq_len = 16
  c.data.context_classes = 1
  c.train.batch_size = 8
  c.train.steps = 4000
  c.train.warmup_steps = 200
  c.train.learning_rate = 0.015  # one rate for every size: the ladder's at cpu_d64
  c.eval_every = 400
  c.checkpoint_interval_s = 60.0
  if preset == "smoke":
    c.grid.size = ("cpu_d16_l2", "cpu_d32")
    c.grid.seed = (0,)
    c.grid.frequency = (0.8, 0.1)
    c.train.steps = 150
    c.train.warmup_steps = 20
    c.train.steps_per_dispatch = 25
    c.eval_every = 50
    c.data.validation_rows = 128
  elif preset == "data_scaling":
    c.grid.size = ("cpu_d16_l2", "cpu_d64")
    c.grid.frequency = (0.2, 0.1, 0.05, 0.025)
    c.grid.steps = (4000, 16000)
  elif preset == "depth":
    c.grid.size = ("cpu_d16", "cpu_d16_l2", "cpu_d64")
  elif preset == "d128":
    c.grid.size = ("cpu_d16_l2", "cpu_d32", "cpu_d64", "cpu_d128")
  elif preset == "answer_tokens":
    c.task.answer_tokens = True
  elif preset == "addition":
    c.grid.task = ("addition",)
  elif preset == "joint":
    c.grid.task = ("comparison", "addition")
    c.task.jointly = True
    c.grid.frequency = (0.4, 0.2, 0.1, 0.05, 0.025)  # two instances a row-set: at most 0.5
  elif preset == "stdlib":
    c.data.corpus = "python_stdlib"
  elif preset == "gap":  # the setting it was measured in: rows of 32, 1,000 steps, p = 16
    c.grid.size = ("cpu_d64",)
    c.grid.seed = (0,)
    c.grid.frequency = (0.125,)
    c.grid.gap = (1, 2, 4, 8)
    c.injection.schedule = "bursts"
    c.task.num_symbols = 16
    c.train.batch_size = 32
    c.train.steps = 1000
    c.train.warmup_steps = 100
    c.train.learning_rate = None
    c.eval_every = 100
  elif preset in ("mechanism", "top_k"):
    c.grid.size = ("cpu_d16_l2", "cpu_d64")
    c.grid.frequency = (0.05, 0.025)
    c.grid.gap = (20,)
    c.injection.schedule = "bursts"
    c.injection.withhold_steps = 1000
    c.train.steps_per_dispatch = 10  # every burst update and the one halfway: chunks of 10
    c.mechanism.gradients = True
    if preset == "mechanism":
      c.mechanism.probes = True
      c.mechanism.retention = True
    else:
      c.mechanism.top_k = (0.03, 0.1, 0.3, 1.0)
  return c
