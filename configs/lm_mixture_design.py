"""How much to upsample a rare task for a given size, and is that cheaper than a larger model?
(docs/language_models.md, "Mixture design"): per size of the CPU injection study's ladder, the
smallest injection frequency at which T_CMP is learned, found by a bracket-and-refine search
instead of a grid; the smallest size that learns a frequency; and each size at its needed
frequency against the largest size at its own (parameters, upsampling, compute to learn,
background loss).

The injection study's CPU default otherwise (configs/lm_size_by_frequency.py): cpu_d16_l2,
cpu_d32 and cpu_d64 at 2 layers, one learning rate (0.015), 4,000 steps of 8 rows of 16 tokens,
T_CMP over p = 8 symbols, three seeds, learned = train accuracy >= 0.9 over the last 3
evaluations. The search: frequencies per sequence in [0.005, 0.8], the first round 5
candidates over 0.07 / 4 .. 0.07 x 4 for every size (design.centers_from may name a finished
injection study's work directory instead), up to 2 expansion rounds and 1 refinement round.

Presets (wall time on a 2-core CPU):
  default          three sizes, 4,000 steps, 2 rounds of 99 models: 9 min 8 s.
  :smoke           two sizes, 300 steps, one seed, 3 candidates, learned = choice accuracy
                   >= 0.8: two rounds, the pipeline end to end in under a minute.
  :training_length the smallest and the largest size at 2,000 and 8,000 steps (4x; each its
                   own schedule): is longer training or upsampling the cheaper lever? About
                   2.5x the default's member-steps per round.
  :gpu             the paper's 4M and 20M sizes with their 50,304-token vocabulary, rows of
                   128, 1,200 steps in bfloat16 (configs/lm_gpu.py's setting), two seeds, 4
                   candidates per round: about as many member-steps as configs/lm_gpu.py, planned
                   at 2 to 4 minutes on one H100; benchmarks/lm_mixture_design_gpu.sh runs it
                   under a 5-minute limit. Not yet measured on a GPU.
"""

from rare_tasks.core.config import study_preset
from rare_tasks.lm.mixture_config import base_config

PRESETS = ("default", "smoke", "training_length", "gpu")


def get_config(preset: str = "default"):
  preset = study_preset("lm_mixture_design", preset, PRESETS)
  c = base_config()
  c.grid.size = ("cpu_d16_l2", "cpu_d32", "cpu_d64")
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
  c.design.min_frequency = 0.005
  c.design.max_frequency = 0.8
  c.design.initial_frequency = 0.07
  c.design.num_candidates = 5
  c.design.bracket_factor = 4.0
  c.design.max_expansions = 2
  c.design.refine_rounds = 1
  if preset == "smoke":
    c.grid.size = ("cpu_d16_l2", "cpu_d32")
    c.grid.seed = (0,)
    c.train.steps = 300
    c.train.warmup_steps = 20
    c.learned.criterion = "choice_accuracy"  # what 300 steps can reach: two rounds run
    c.learned.threshold = 0.8
    c.train.steps_per_dispatch = 25
    c.eval_every = 50
    c.data.validation_rows = 128
    c.design.initial_frequency = 0.2
    c.design.num_candidates = 3
    c.design.max_expansions = 1
  elif preset == "training_length":
    c.grid.size = ("cpu_d16_l2", "cpu_d64")
    c.grid.steps = (2000, 8000)
  elif preset == "gpu":
    c.grid.size = ("4M", "20M")
    c.data.vocab_size = 50_304
    c.data.seq_len = 128
    c.data.validation_rows = 256
    c.data.context_classes = 4
    c.train.batch_size = 32
    c.train.steps = 1200
    c.train.warmup_steps = 100
    c.train.learning_rate = 0.008
    c.train.steps_per_dispatch = 100
    c.eval_every = 100
    c.grid.seed = (0, 1)  # two seeds: 10 members per size in the first round, 8 after
    c.design.initial_frequency = 0.05
    c.design.num_candidates = 4
    c.design.max_expansions = 1
  return c
