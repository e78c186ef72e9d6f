"""What the synthetic track's tests share: a tiny grid, and its run uninterrupted on 8 devices."""

import pytest

from rare_tasks.synthetic import grid_study
from rare_tasks.synthetic.config import base_config


def tiny_config():
  """4 tasks of 2 features; widths 2 and 8 x 2 frequencies x 2 seeds; 60 steps."""
  c = base_config()
  c.task.num_tasks = 4
  c.task.block_size = 2
  c.task.common_exponent = 1.0
  c.grid.width = (2, 8)
  c.grid.rare_frequency = (0.05, 0.3)
  c.grid.seed = (0, 1)
  c.train.steps = 60
  c.train.batch_size = 32
  c.train.learning_rate = 1e-2
  c.eval_every = 20
  c.eval_samples = 256
  c.checkpoint_interval_s = 0.0
  return c


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
  """The tiny grid run uninterrupted on all 8 devices: (work directory, RunReport)."""
  wd = tmp_path_factory.mktemp("reference")
  report = grid_study.run(tiny_config(), wd)
  return wd, report
