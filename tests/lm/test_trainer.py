"""The trainer: golden losses, 1 vs 8 devices, FSDP vs data parallel, ensemble members vs the same
models alone (with clipping active), the schedule and where weight decay applies."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rare_tasks.lm import sharding
from rare_tasks.lm.ladder import Shape
from rare_tasks.lm.model import Model, ModelSpec
from rare_tasks.lm.trainer import Trainer, TrainSpec, decay_mask, optimizer, schedule

SPEC = ModelSpec(Shape(16, 1, 2, 32), vocab_size=64)
# A small clip: every step is clipped, so a clip over the stacked members would show.
TRAIN = TrainSpec(steps=20, learning_rate=3e-3, warmup_steps=2, grad_clip=0.05)
TOLERANCE = dict(rtol=2e-5, atol=2e-6)


def _batches(steps: int = 4) -> jax.Array:
  return jax.random.randint(jax.random.key(7), (steps, 8, 17), 0, 64)


@functools.cache
def _train(num_devices: int, seeds: tuple[int, ...], fsdp: int = 1, chunks: tuple = (4,)):
  devices = jax.devices()[:num_devices]
  members = sharding.member_axis_size(len(seeds), num_devices, fsdp)
  mesh = sharding.make_mesh(devices, members, fsdp)
  trainer = Trainer(Model(SPEC), TRAIN, len(seeds), mesh)
  state = trainer.init(np.array(seeds))
  batches = jax.device_put(_batches(), sharding.batch_sharding(mesh, leading=1))
  parts, start = [], 0
  for n in chunks:
    state, p = trainer.chunk(state, batches[start:start + n])
    parts.append(jax.device_get(p))
    start += n
  parts = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  return jax.device_get(state), parts


def test_golden_losses_of_the_first_steps():
  _, parts = _train(1, (0,))
  # float32 on CPU with the pinned versions (constraints.txt); ln 64 = 4.159 at init.
  np.testing.assert_allclose(parts["ce"][:, 0], [4.146804, 4.174044, 4.165332, 4.157139],
                             rtol=1e-5)
  assert np.all(parts["grad_norm"] > TRAIN.grad_clip)  # clipping is active


def test_one_device_and_eight_devices_agree():
  one, p1 = _train(1, (0,))
  eight, p8 = _train(8, (0,))
  chex.assert_trees_all_close(one, eight, **TOLERANCE)
  np.testing.assert_allclose(p1["ce"], p8["ce"], **TOLERANCE)


def test_fsdp_equals_pure_data_parallel():
  dp, _ = _train(8, (0,), fsdp=1)
  fsdp, _ = _train(8, (0,), fsdp=8)
  chex.assert_trees_all_close(dp, fsdp, **TOLERANCE)


def test_ensemble_members_equal_the_same_models_trained_alone():
  ensemble, parts = _train(8, (0, 5))
  for member, seed in enumerate((0, 5)):
    alone, alone_parts = _train(8, (seed,))
    chex.assert_trees_all_close(jax.tree.map(lambda a, m=member: a[m], ensemble),
                                jax.tree.map(lambda a: a[0], alone), **TOLERANCE)
    np.testing.assert_allclose(parts["ce"][:, member], alone_parts["ce"][:, 0], **TOLERANCE)
  # Different seeds: different models, each clipped by its own norm.
  assert not np.allclose(parts["grad_norm"][:, 0], parts["grad_norm"][:, 1])


def test_steps_in_one_chunk_or_several_agree():
  whole, _ = _train(1, (0,), chunks=(4,))
  split, _ = _train(1, (0,), chunks=(2, 2))
  chex.assert_trees_all_close(whole, split, rtol=1e-6, atol=1e-7)


def test_schedule_warms_up_linearly_then_decays_to_one_percent():
  s = schedule(TrainSpec(steps=100, learning_rate=1e-2, warmup_steps=10))
  np.testing.assert_allclose([s(0), s(5), s(10), s(100)], [0.0, 5e-3, 1e-2, 1e-4], rtol=1e-5)
  mid = float(s(55))  # halfway through the cosine
  np.testing.assert_allclose(mid, 1e-4 + (1e-2 - 1e-4) * 0.5, rtol=1e-5)


def test_weight_decay_applies_to_matrices_not_to_the_embedding_or_norms():
  params = jax.jit(Model(SPEC).init)(jax.random.key(0))
  mask = decay_mask(params)
  assert mask["embedding"] is False and mask["lm_head"]["kernel"] is True
  assert mask["layers"]["attention"]["q"]["kernel"] is True
  assert mask["layers"]["mlp_norm"]["weight"] is False and mask["final_norm"]["weight"] is False
  assert mask["layers"]["attention"]["q_norm"]["weight"] is False
  # With zero gradients Adam's step is 0: what is left is decay, -lr * wd * w where masked.
  spec = TrainSpec(steps=10, learning_rate=1e-2, warmup_steps=0, weight_decay=0.05)
  tx = optimizer(spec)
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = jax.jit(tx.update)(zeros, tx.init(params), params)
  for m, u, w in zip(jax.tree.leaves(mask), jax.tree.leaves(updates), jax.tree.leaves(params)):
    np.testing.assert_allclose(u, -1e-2 * 0.05 * w if m else 0.0, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("count", [0, 3])
def test_learning_rate_of_an_update(count):
  mesh = sharding.make_mesh(jax.devices()[:1], 1, 1)
  trainer = Trainer(Model(SPEC), TRAIN, 1, mesh)
  assert trainer.learning_rate(count) == pytest.approx(float(schedule(TRAIN)(count)))
