"""The probes measurement: the residual stream at every task symbol for every member, and its
record, the order feature of the first block and the Fourier modes summed over the blocks."""

import jax
import numpy as np
import pytest

from rare_tasks.analysis import probes as analysis
from rare_tasks.lm import sharding, tasks
from rare_tasks.lm.ladder import Shape
from rare_tasks.lm.model import Model, ModelSpec
from rare_tasks.lm.probes import Probes
from rare_tasks.lm.trainer import Trainer, TrainSpec

SPEC = ModelSpec(Shape(16, 2, 2, 32), vocab_size=128)
TASKS = tasks.make_tasks(("comparison", "addition"), 16, 128, 0, 127, False, "ordered")


def test_the_measurement_is_each_members_residual_stream_at_each_symbol():
  mesh = sharding.make_mesh(jax.devices()[:1], 1, 1)
  trainer = Trainer(Model(SPEC), TrainSpec(steps=4, learning_rate=1e-3), 2, mesh)
  state = trainer.init(np.array([0, 1]))
  probe = Probes(TASKS, mesh)
  got = np.asarray(probe.measure(trainer, state))
  assert got.shape == (2, 3, 32, 16)
  params = jax.tree.map(lambda a: a[1], state["params"])
  symbol = TASKS[1].symbols[3]
  _, stream = trainer.model.residuals(params, np.array([[symbol]]))
  np.testing.assert_allclose(got[1, :, 16 + 3], np.asarray(stream)[:, 0, 0], rtol=1e-5,
                             atol=1e-6)
  # Layer 0 is the embedding row of the symbol.
  np.testing.assert_allclose(got[1, 0, 16 + 3], np.asarray(params["embedding"])[symbol],
                             rtol=1e-6)


def test_the_record_reads_a_planted_order_and_planted_fourier_modes():
  rng = np.random.default_rng(0)
  p, d = 16, 24
  a = np.arange(p)
  order = np.outer(a, rng.normal(size=d))
  waves = (np.outer(np.cos(2 * np.pi * 3 * a / p), rng.normal(size=d))
           + np.outer(np.sin(2 * np.pi * 5 * a / p), rng.normal(size=d)))
  noise = rng.normal(size=(3, 2 * p, d)) * 1e-3
  stream = noise.copy()
  stream[1, :p] += order  # the comparison's order in the first block
  stream[1, p:] += waves  # the addition's two modes in both blocks, and the embedding
  stream[2, p:] += waves
  stream[0, p:] += waves
  probe = Probes(TASKS, sharding.make_mesh(jax.devices()[:1], 1, 1))
  r = probe.record(1, np.stack([noise, stream]))
  assert r["comparison_order_r2"] > 0.99
  assert r["comparison_order_r2"] == r["comparison_order_r2_by_layer"][1]
  assert r["comparison_order_r2_by_layer"][2] < 0.5  # noise there
  assert r["addition_fourier_modes_by_layer"] == [2, 2, 2]
  assert r["addition_fourier_modes"] == 4  # the blocks' outputs, not the embedding
  assert r["comparison_fourier_modes"] == sum(r["comparison_fourier_modes_by_layer"][1:])
  noise_only = probe.record(0, np.stack([noise, stream]))
  assert noise_only["addition_fourier_modes"] == sum(
      analysis.fourier_modes(f) for f in noise[1:, p:])


def test_a_non_finite_stream_records_none_not_nan():
  probe = Probes(TASKS[:1], sharding.make_mesh(jax.devices()[:1], 1, 1))
  r = probe.record(0, np.full((1, 3, 16, 4), np.nan))
  assert r["comparison_order_r2"] is None and r["comparison_fourier_modes"] == 0
  assert r["comparison_order_r2_by_layer"] == [None, None, None]


@pytest.mark.parametrize("factor", [0.5, 8.0])
def test_the_fourier_factor_is_passed_on(factor):
  probe = Probes(TASKS[:1], sharding.make_mesh(jax.devices()[:1], 1, 1), factor)
  stream = np.random.default_rng(1).normal(size=(1, 3, 16, 8))
  r = probe.record(0, stream)
  assert r["comparison_fourier_modes_by_layer"] == [
      analysis.fourier_modes(f, factor) for f in stream[0]]
