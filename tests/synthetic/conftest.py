"""What the synthetic track's tests share: a tiny grid run uninterrupted on 8 devices; and a small
grid with every mechanism measurement on, run once on 8 devices, once on 1, and once killed
mid-run and resumed (each when a test first asks for it)."""

import jax
import pytest

from rare_tasks.synthetic import grid_study
from rare_tasks.synthetic.config import base_config
from tests.callbacks import after_chunk


def tiny_config():
  """4 tasks of 2 features; widths 2 and 8 x 2 frequencies x 2 seeds; 60 steps."""
  c = base_config()
  c.task.num_tasks = 4
  c.task.block_size = 2
  c.task.common_exponent = 1.0
  c.grid.width = (2, 8)
  c.grid.frequency = (0.05, 0.3)
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


def mechanism_config():
  """The tiny grid's tasks and training, with widths 2 and 6 x gaps 1 and 4 x seeds 0 and 1,
  per-task betas, bursts after 16 of 48 steps; allocation, interference and the per-step rare
  trace on."""
  c = tiny_config()
  c.task.beta = (0.0, 1.0, 1.0, 3.0)
  c.grid.width = (2, 6)
  c.grid.frequency = (1 / 16,)
  c.grid.gap = (1, 4)
  c.injection.schedule = "bursts"
  c.injection.withhold_steps = 16
  c.train.steps = 48
  c.eval_every = 16
  c.measure.allocation = True
  c.measure.interference = True
  c.measure.interference_samples = 16
  c.measure.trace_rare = True
  return c


class _Killed(Exception):
  pass


@pytest.fixture(scope="session")
def mechanism_run(tmp_path_factory):
  """(work directory, RunReport) of the mechanism grid on all 8 devices."""
  wd = tmp_path_factory.mktemp("mechanism")
  return wd, grid_study.run(mechanism_config(), wd)


@pytest.fixture(scope="session")
def mechanism_run_one_device(tmp_path_factory):
  """The work directory of the same grid on one device."""
  wd = tmp_path_factory.mktemp("mechanism_one_device")
  grid_study.run(mechanism_config(), wd, devices=jax.devices()[:1])
  return wd


@pytest.fixture(scope="session")
def mechanism_run_resumed(tmp_path_factory):
  """The work directory of the same grid killed inside its second group (after its checkpoint
  at step 32), then resumed; both invocations log to TensorBoard."""
  wd = tmp_path_factory.mktemp("mechanism_resumed")
  calls = []

  def kill(group, step):
    calls.append((group, step))
    if len(calls) == 5:  # inside the second group
      raise _Killed

  c = mechanism_config()
  c.log.tensorboard = True
  with pytest.raises(_Killed):
    grid_study.run(c, wd, callbacks=[after_chunk(kill)])
  grid_study.run(c, wd)
  return wd
