"""The trainer: golden losses, 1 vs 8 devices, FSDP vs data parallel, ensemble members vs the same
models alone (with clipping active, and with each member's own row injected), the schedule, where
weight decay applies, and the label metrics of a planted lookup-table model."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rare_tasks.core import divergence
from rare_tasks.lm import sharding
from rare_tasks.lm import trainer as trainer_module
from rare_tasks.lm.ladder import Shape
from rare_tasks.lm.model import Model, ModelSpec
from rare_tasks.lm.trainer import Trainer, TrainSpec, decay_mask, optimizer, schedule, with_injected

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


def test_a_diverging_member_is_frozen_and_the_other_trains_bit_identically():
  mesh = sharding.make_mesh(jax.devices()[:8], sharding.member_axis_size(2, 8, 1), 1)
  trainer = Trainer(Model(SPEC), TRAIN, 2, mesh)
  batches = jax.device_put(_batches(), sharding.batch_sharding(mesh, leading=1))

  def run(blow_up: bool):
    state = trainer.init(np.array([0, 5]))
    if blow_up:  # member 1's head overflows its logits at the first update
      head = state["params"]["lm_head"]["kernel"]
      state["params"]["lm_head"]["kernel"] = head.at[1].multiply(1e38)
    state, parts = trainer.chunk(state, batches, first_step=10)
    return jax.device_get(state), jax.device_get(parts), state

  ref, ref_parts, _ = run(False)
  state, parts, live = run(True)
  np.testing.assert_array_equal(state["diverged"], [divergence.NOT_DIVERGED, 11])
  chex.assert_trees_all_equal(jax.tree.map(lambda a: a[0], state["params"]),
                              jax.tree.map(lambda a: a[0], ref["params"]))
  for k in ("ce", "z_loss", "grad_norm"):
    np.testing.assert_array_equal(parts[k][:, 0], ref_parts[k][:, 0])
    assert np.all(np.isnan(parts[k][:, 1]))
  val = trainer.evaluate(live, batches[0], 8)
  assert np.isfinite(val[0]) and np.isnan(val[1])


def test_steps_in_one_chunk_or_several_agree():
  whole, _ = _train(1, (0,), chunks=(4,))
  split, _ = _train(1, (0,), chunks=(2, 2))
  chex.assert_trees_all_close(whole, split, rtol=1e-6, atol=1e-7)


def test_the_cpu_compiler_options_change_no_result(monkeypatch):
  assert trainer_module.compiler_options(sharding.make_mesh(jax.devices()[:1], 1, 1)) == (
      trainer_module.CPU_COMPILER_OPTIONS)  # the pinned jaxlib knows them
  fast, fast_parts = _train(1, (0,))
  monkeypatch.setattr(trainer_module, "compiler_options", lambda mesh: None)
  plain, plain_parts = _train.__wrapped__(1, (0,))
  chex.assert_trees_all_close(fast, plain, **TOLERANCE)
  chex.assert_trees_all_close(fast_parts, plain_parts, **TOLERANCE)


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


def _random_injected(steps: int, members: int, seed: int) -> np.ndarray:
  """Random injected rows: about a third of the rows of each member replaced by 4 random tokens."""
  rng = np.random.default_rng(seed)
  injected = rng.integers(0, 64, (steps, members, 8, 4)).astype(np.int32)
  injected[rng.random((steps, members, 8)) > 0.33] = -1
  return injected


def _train_injected(seeds: tuple[int, ...], injected: np.ndarray, num_devices: int = 8):
  devices = jax.devices()[:num_devices]
  mesh = sharding.make_mesh(devices, sharding.member_axis_size(len(seeds), num_devices, 1), 1)
  trainer = Trainer(Model(SPEC), TRAIN, len(seeds), mesh)
  state = trainer.init(np.array(seeds))
  batches = jax.device_put(_batches(), sharding.batch_sharding(mesh, leading=1))
  state, parts = trainer.chunk(state, batches, jax.device_put(injected,
                                                              sharding.injected_sharding(mesh)))
  return jax.device_get(state), jax.device_get(parts)


def test_an_injected_row_differs_from_its_twin_only_in_its_first_four_tokens():
  tokens = jax.random.randint(jax.random.key(1), (8, 17), 0, 64)
  injected = np.full((8, 4), -1, np.int32)
  injected[2] = [9, 8, 7, 0]
  injected[5, :2] = [1, 1]  # a partial injection keeps the rest of the row's own tokens
  out = np.asarray(with_injected(tokens, jnp.asarray(injected)))
  differs = out != np.asarray(tokens)
  assert not differs[:, 4:].any() and not differs[[0, 1, 3, 4, 6, 7]].any()
  np.testing.assert_array_equal(out[2, :4], [9, 8, 7, 0])
  np.testing.assert_array_equal(out[5, :4], [1, 1, *np.asarray(tokens)[5, 2:4]])


def test_injected_rows_that_keep_every_token_train_as_the_plain_chunk():
  plain, parts = _train(8, (0, 5))
  kept, kept_parts = _train_injected((0, 5), np.full((4, 2, 8, 4), -1, np.int32))
  chex.assert_trees_all_close(plain, kept, **TOLERANCE)
  np.testing.assert_allclose(parts["ce"], kept_parts["ce"], **TOLERANCE)


def test_members_with_their_own_injected_rows_equal_the_same_cells_trained_alone():
  injected = _random_injected(4, 2, seed=0)
  ensemble, parts = _train_injected((0, 0), injected, num_devices=2)
  # The second member alone (the first's position in the ensemble would hide an offset bug).
  alone, alone_parts = _train_injected((0,), injected[:, 1:2], num_devices=2)
  chex.assert_trees_all_close(jax.tree.map(lambda a: a[1], ensemble),
                              jax.tree.map(lambda a: a[0], alone), **TOLERANCE)
  np.testing.assert_allclose(parts["ce"][:, 1], alone_parts["ce"][:, 0], **TOLERANCE)
  # Members 0 and 1 share an init and the text; their injected rows alone make them differ.
  assert not np.allclose(parts["ce"][:, 0], parts["ce"][:, 1])


class LookupModel:
  """A planted model: the logits after (x, y) are the row table[x, y] of its parameters."""

  def __init__(self, vocab: int):
    self.vocab = vocab

  def init(self, key):
    del key
    return {"table": jnp.zeros((self.vocab, self.vocab, self.vocab))}

  def apply(self, params, tokens):
    prev = jnp.concatenate([jnp.zeros_like(tokens[:, :1]), tokens[:, :-1]], axis=1)
    return params["table"][prev, tokens]


def test_label_metrics_of_a_planted_lookup_table_are_exact():
  vocab, n = 16, 40
  rng = np.random.default_rng(0)
  prefixes = rng.integers(0, vocab, (n, 2)).astype(np.int32)
  labels = rng.integers(0, vocab, n).astype(np.int32)
  planted = np.zeros((vocab, vocab, vocab), np.float32)
  right = rng.random(n) < 0.6
  for (x, y), label, ok in zip(prefixes, labels, right):
    planted[x, y] = 0.0
    planted[x, y, label if ok else (label + 1) % vocab] = 5.0
  # A pair drawn twice keeps its last plant: the expected hits follow the table itself.
  expected_hit = np.array([planted[x, y].argmax() == lab for (x, y), lab in zip(prefixes, labels)])
  logits = planted[prefixes[:, 0], prefixes[:, 1]]
  expected_ce = (np.log(np.exp(logits).sum(-1)) - logits[np.arange(n), labels])
  # Two candidates per instance (the second padded away on every third), the right one first or
  # second at random: a choice hit when the right candidate's logit is the larger.
  candidates = rng.integers(0, vocab, (n, 2)).astype(np.int32)
  candidates[::3, 1] = -1
  right = np.where(candidates[:, 1] < 0, 0, rng.integers(0, 2, n)).astype(np.int32)
  scores = np.where(candidates >= 0, logits[np.arange(n)[:, None], np.maximum(candidates, 0)],
                    -np.inf)
  best = scores.max(1)
  expected_choice = (scores[np.arange(n), right] == best) / (scores == best[:, None]).sum(1)
  expected_formatted = np.array([logits[i].argmax() in candidates[i] for i in range(n)])
  mesh = sharding.make_mesh(jax.devices()[:1], 1, 1)
  trainer = Trainer(LookupModel(vocab), TRAIN, 2, mesh)
  state = trainer.init(np.array([0, 1]))
  state["params"]["table"] = jnp.stack([jnp.asarray(planted), jnp.zeros_like(planted)])
  out = trainer.label_metrics(state, jnp.asarray(prefixes), jnp.asarray(labels),
                              jnp.asarray(candidates), jnp.asarray(right), 8)
  ce, hit = out["ce"], out["hit"]
  np.testing.assert_allclose(np.asarray(ce[0]), expected_ce, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(hit[0]), expected_hit)
  np.testing.assert_allclose(np.asarray(out["choice"][0]), expected_choice)
  np.testing.assert_array_equal(np.asarray(out["formatted"][0]), expected_formatted)
  assert 0 < expected_hit.mean() < 1 and 0 < expected_choice.mean() < 1
  assert {0.5, 1.0} <= set(expected_choice.tolist())  # wins and ties
  assert 0 < expected_formatted.mean() < 1
  # The untrained member: uniform logits, CE ln V; argmax ties go to token 0; among the
  # candidates every one ties, worth 1/k (1 for a row with one candidate, 1/2 with two).
  np.testing.assert_allclose(np.asarray(ce[1]), np.log(vocab), rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(hit[1]), labels == 0)
  np.testing.assert_allclose(np.asarray(out["choice"][1]),
                             np.where(candidates[:, 1] < 0, 1.0, 0.5))


def test_a_member_with_nan_logits_chooses_nothing():
  vocab, n = 8, 8
  rng = np.random.default_rng(1)
  prefixes = rng.integers(0, vocab, (n, 2)).astype(np.int32)
  candidates = rng.integers(0, vocab, (n, 2)).astype(np.int32)
  mesh = sharding.make_mesh(jax.devices()[:1], 1, 1)
  trainer = Trainer(LookupModel(vocab), TRAIN, 1, mesh)
  state = trainer.init(np.array([0]))
  state["params"]["table"] = jnp.full((1, vocab, vocab, vocab), jnp.nan)
  out = trainer.label_metrics(state, jnp.asarray(prefixes), jnp.asarray(candidates[:, 0]),
                              jnp.asarray(candidates), jnp.zeros(n, jnp.int32), 4)
  np.testing.assert_array_equal(np.asarray(out["choice"]), 0.0)
  assert np.isnan(np.asarray(out["ce"])).all()
