"""The memory estimate checked before any compute: bytes per device from the state's own
shardings, the words it prints, and the refusal of a state that does not fit, on the host (CPU)
and on one accelerator."""

import functools
import re

import jax
import numpy as np
import pytest

from rare_tasks.core.config import ConfigError
from rare_tasks.lm import ladder, memory, sharding
from rare_tasks.lm.ladder import Shape
from rare_tasks.lm.model import Model, ModelSpec
from rare_tasks.lm.trainer import Trainer, TrainSpec

SMALL = Shape(16, 1, 2, 64)


@functools.cache
def _state(vocab: int, members: int, member_split: int, fsdp: int, shape: Shape = SMALL):
  mesh = sharding.make_mesh(jax.devices(), member_split, fsdp)
  return Trainer(Model(ModelSpec(shape, vocab)), TrainSpec(steps=10, learning_rate=1e-3),
                 members, mesh).abstract_state


def _params(shape: Shape = SMALL, vocab: int = 512) -> int:
  return ladder.total_params(shape, vocab)


def test_bytes_per_device_are_the_shards_of_parameters_gradients_and_adam():
  n = _params()
  # Replicated over 8 data devices: params, grads, mu, nu in float32, two int32 step counters
  # (Adam's and the schedule's) and the int32 diverged step.
  assert memory.state_bytes_per_device(_state(512, 1, 1, 1)) == 16 * n + 12
  # Members split over the member axis: each device holds one member.
  assert memory.state_bytes_per_device(_state(512, 8, 8, 1)) == 16 * n + 12
  # fsdp 8 splits every matrix (vocabulary and widths divisible by 8); norms stay whole.
  norms = 16 * (4 * 16 + 16)
  assert memory.state_bytes_per_device(_state(512, 1, 1, 8)) == (16 * n - norms) // 8 + norms + 12


def test_a_vocabulary_fsdp_does_not_divide_is_counted_whole_on_every_device():
  split = memory.state_bytes_per_device(_state(512, 1, 1, 8))
  whole = memory.state_bytes_per_device(_state(513, 1, 1, 8))
  assert whole - split > 16 * 2 * 513 * 16 * 7 / 8  # both embeddings unsplit


def test_a_small_model_fits_and_is_described():
  words = memory.check_fits("cpu_d16", _state(512, 2, 2, 1), _params(), 2, jax.devices())
  assert "GiB" in words and "host memory" in words
  assert ladder.size_name(_params()) in words and "x 2 member(s)" in words


def test_the_4b_preset_times_eight_members_does_not_fit_this_host():
  shape = ladder.PRESETS["4B"].shape
  state = _state(ladder.NAMING_VOCAB, 8, 8, 1, shape)
  assert memory.state_bytes_per_device(state) * 8 > memory.host_memory()  # ~500 GiB
  with pytest.raises(ConfigError, match=re.escape("config.model.preset = '4B'")) as e:
    memory.check_fits("4B", state, ladder.total_params(shape, ladder.NAMING_VOCAB), 8,
                      jax.devices())
  assert "GiB" in str(e.value) and "smaller preset" in str(e.value)


def test_the_cpu_path_compares_every_devices_state_with_the_host(monkeypatch):
  state = _state(512, 8, 8, 1)
  need = memory.state_bytes_per_device(state) * 8
  monkeypatch.setattr(memory, "host_memory", lambda: int(np.ceil(need / 0.9)) + 1)
  memory.check_fits("tiny", state, _params(), 8, jax.devices())
  monkeypatch.setattr(memory, "host_memory", lambda: int(need / 0.9) - 1)
  with pytest.raises(ConfigError, match=re.escape("config.model.preset = 'tiny'")):
    memory.check_fits("tiny", state, _params(), 8, jax.devices())


class _Accelerator:
  platform = "gpu"
  device_kind = "Test GPU"

  def __init__(self, bytes_limit):
    self.bytes_limit = bytes_limit

  def memory_stats(self):
    return None if self.bytes_limit is None else {"bytes_limit": self.bytes_limit}


def test_an_accelerator_compares_one_devices_state_with_its_memory(monkeypatch):
  monkeypatch.setattr(memory, "host_memory", lambda: 1)  # not consulted
  state = _state(512, 8, 8, 1)
  need = memory.state_bytes_per_device(state)
  fits = [_Accelerator(int(np.ceil(need / 0.9)) + 1) for _ in range(8)]
  assert memory.device_memory(fits[0]) == fits[0].bytes_limit
  assert "memory of one Test GPU" in memory.check_fits("tiny", state, _params(), 8, fits)
  with pytest.raises(ConfigError):
    memory.check_fits("tiny", state, _params(), 8, [_Accelerator(need) for _ in range(8)])


def test_an_accelerator_without_memory_stats_falls_back_to_the_host(monkeypatch):
  devices = [_Accelerator(None) for _ in range(8)]
  assert memory.device_memory(devices[0]) is None
  monkeypatch.setattr(memory, "host_memory", lambda: 10**12)
  assert "host memory" in memory.check_fits("tiny", _state(512, 8, 8, 1), _params(), 8, devices)


def test_host_memory_is_this_machines():
  assert memory.host_memory() > 2**28
