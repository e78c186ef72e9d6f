"""Tests of rare_tasks/synthetic/ensemble.py: golden values, member independence, the closed-form
optimum."""

from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rare_tasks import injection
from rare_tasks.analysis import allocation, interference
from rare_tasks.core import divergence, rng
from rare_tasks.synthetic import ensemble, theory
from rare_tasks.synthetic.models import EncoderHeads
from rare_tasks.synthetic.tasks import LinearMixture, linear_measures, linear_mixture, task_family


def _setup(width, num_tasks, block_size, seeds, freqs, rates, steps=100, batch_size=8,
           exponent=1.0, schedule="constant", eval_samples=64, generator="philox4x32"):
  task = LinearMixture(num_tasks, block_size)
  spec = ensemble.EnsembleSpec(
      EncoderHeads(width, num_tasks, block_size), task,
      ensemble.TrainSpec(steps=steps, batch_size=batch_size, schedule=schedule,
                         final_lr_fraction=0.01, eval_samples=eval_samples, rng=generator))
  spectra = np.stack([task.spectrum(1.0)] * len(seeds))
  mixtures = np.stack([[task.mixture(f, exponent) for f in freqs]] * len(seeds))
  consts = ensemble.make_constants(task, np.array(seeds), {"spectrum": spectra}, mixtures,
                                   np.broadcast_to(np.array(rates, np.float32),
                                                   (len(seeds), len(freqs))))
  return task, spec, consts


# threefry2x32's values are those of every run made before config.train.rng existed: they
# must not change, so that such runs resume and re-report exactly.
@pytest.mark.parametrize("generator,golden", [
    ("threefry2x32", [1.3595123, 2.3223104, 1.0233324]),
    ("philox4x32", [1.6453003, 2.0401857, 2.0417073])])
def test_golden_losses_of_first_steps(generator, golden):
  _, spec, consts = _setup(4, 3, 2, [0], [0.2], [1e-2], generator=generator)
  state = ensemble.init_state(spec, consts, 1)
  losses = []
  for _ in range(3):
    state, loss = ensemble.train_step(spec, state, consts)
    losses.append(float(loss[0, 0]))
  np.testing.assert_allclose(losses, golden, rtol=1e-5)
  assert int(state["step"]) == 3


def test_first_loss_is_target_energy_because_heads_start_at_zero():
  task, spec, consts = _setup(4, 3, 2, [5], [0.2], [1e-2], batch_size=64)
  state = ensemble.init_state(spec, consts, 1)
  _, loss = ensemble.train_step(spec, state, consts)
  # Recompute the step-0 batch by hand: zero heads predict 0, so the loss is mean ||z_task||^2.
  key = jax.random.fold_in(jax.random.fold_in(rng.key(5, "philox4x32"), 2), 0)
  kx, ku = jax.random.split(key)
  _, z = linear_mixture.sample_inputs(kx, consts["shared"]["basis"],
                                      jnp.sqrt(consts["stream"]["spectrum"][0]).reshape(-1), 64)
  tasks = task_family.assign_tasks(task_family.sample_task_uniforms(ku, 64),
                                   jnp.asarray(consts["mixture"][0, 0]))
  expected = jnp.mean(jnp.sum(z.reshape(64, 3, 2) ** 2, -1)[jnp.arange(64), tasks])
  np.testing.assert_allclose(float(loss[0, 0]), float(expected), rtol=1e-6)


def test_a_chunk_trains_exactly_as_its_steps_one_at_a_time():
  # The scanned chunk and single steps are different programs; the batch is drawn apart from
  # the members' losses in both, so the chunk length (eval_every, a resume) changes no bit.
  _, spec, consts = _setup(16, 16, 8, [0, 1], [0.01, 0.05, 0.2], [3e-3], batch_size=256)
  start = ensemble.init_state(spec, consts, 3)
  one = jax.jit(partial(ensemble.train_step, spec))
  whole, _ = jax.jit(partial(ensemble.train_chunk, spec, num_steps=6))(start, consts)
  pieces = start
  for n in (1, 2, 3):
    pieces, _ = jax.jit(partial(ensemble.train_chunk, spec, num_steps=n))(pieces, consts)
  steps = start
  for _ in range(6):
    steps, _ = one(steps, consts)
  chex.assert_trees_all_equal(whole, pieces)
  chex.assert_trees_all_equal(whole, steps)


def test_member_trajectory_does_not_depend_on_its_ensemble():
  seeds, freqs, rates = [0, 3], [0.05, 0.2, 0.4], [1e-2, 3e-3, 1e-3]
  _, spec, consts = _setup(6, 4, 2, seeds, freqs, rates)
  chunk = jax.jit(partial(ensemble.train_chunk, spec, num_steps=20))
  state, loss = chunk(ensemble.init_state(spec, consts, 3), consts)
  for s, p in [(0, 0), (1, 2)]:
    _, spec1, consts1 = _setup(6, 4, 2, [seeds[s]], [freqs[p]], [rates[p]])
    alone, alone_loss = chunk(ensemble.init_state(spec1, consts1, 1), consts1)
    member = jax.tree.map(lambda a, s=s, p=p: a[s, p][None, None], state["params"])
    chex.assert_trees_all_close(member, alone["params"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss[s, p], alone_loss[0, 0], rtol=1e-5)


def test_a_diverging_member_is_frozen_and_the_others_train_bit_identically():
  seeds, freqs = [0, 3], [0.05, 0.2, 0.4]
  _, spec, calm = _setup(6, 4, 2, seeds, freqs, [1e-2, 3e-3, 1e-3])
  _, _, wild = _setup(6, 4, 2, seeds, freqs, [1e-2, 1e30, 1e-3])  # member 1 of each stream
  chunk = jax.jit(partial(ensemble.train_chunk, spec, num_steps=5))
  evaluate = jax.jit(partial(ensemble.evaluate, spec))
  start = ensemble.init_state(spec, calm, 3)
  np.testing.assert_array_equal(start["diverged"], divergence.NOT_DIVERGED)
  ref, ref_loss = chunk(start, calm)
  state, loss = chunk(ensemble.init_state(spec, wild, 3), wild)
  # Adam's first step moves by about the rate (1e30: finite); the second's loss overflows:
  # diverged at update 2, frozen at its parameters after update 1
  np.testing.assert_array_equal(state["diverged"], [[-1, 2, -1], [-1, 2, -1]])
  assert np.all(np.isnan(loss[:, 1])) and np.all(np.isfinite(loss[:, [0, 2]]))
  after_one, _ = jax.jit(partial(ensemble.train_chunk, spec, num_steps=1))(
      ensemble.init_state(spec, wild, 3), wild)
  chex.assert_trees_all_equal(jax.tree.map(lambda a: a[:, 1], state["params"]),
                              jax.tree.map(lambda a: a[:, 1], after_one["params"]))
  assert bool(divergence.finite(state["params"]))
  for p in (0, 2):
    chex.assert_trees_all_equal(jax.tree.map(lambda a, p=p: a[:, p], state["params"]),
                                jax.tree.map(lambda a, p=p: a[:, p], ref["params"]))
    np.testing.assert_array_equal(loss[:, p], ref_loss[:, p])
  measured = evaluate(state, wild)
  assert np.all(np.isnan(measured["fvu"][:, 1])) and np.all(np.isfinite(measured["fvu"][:, 0]))
  again, _ = chunk(state, wild)  # stays frozen, its step kept
  np.testing.assert_array_equal(again["diverged"], state["diverged"])


def test_members_of_a_stream_share_init_but_not_trajectory():
  _, spec, consts = _setup(6, 4, 2, [0], [0.05, 0.4], [1e-2])
  state = ensemble.init_state(spec, consts, 2)
  enc = state["params"]["encoder"]["kernel"]
  np.testing.assert_array_equal(enc[0, 0], enc[0, 1])
  state, _ = jax.jit(partial(ensemble.train_chunk, spec, num_steps=5))(state, consts)
  assert not np.allclose(state["params"]["encoder"]["kernel"][0, 0],
                         state["params"]["encoder"]["kernel"][0, 1])


def _population_loss(task, spec, params, mixture):
  w = spec.model.encoder_map(params)
  fvu = linear_measures.population_fvu(w, params["heads"]["kernel"], task.basis_matrix(),
                                    task.spectrum(1.0))
  return float(np.sum(np.asarray(fvu) * task.spectrum(1.0).sum(-1) * mixture))


def test_trained_linear_model_reaches_closed_form_optimum():
  freqs = [0.02, 0.1, 0.3]
  # Exponent 1.3, not 1: at 1, task 0's second feature and task 1's first have the same value
  # (pi_0 / 2), a tie at the width's edge, where any split between them is optimal.
  task, spec, consts = _setup(3, 4, 2, [0], freqs, [1e-2], steps=3000, batch_size=128,
                              exponent=1.3, schedule="cosine")
  state = ensemble.init_state(spec, consts, len(freqs))
  state, _ = jax.jit(partial(ensemble.train_chunk, spec, num_steps=3000))(state, consts)
  for p, f in enumerate(freqs):
    mixture = task.mixture(f, 1.3)
    pred = theory.predict(mixture, task.spectrum(1.0), 3)
    params = jax.tree.map(lambda a, p=p: a[0, p], state["params"])
    loss = _population_loss(task, spec, params, mixture)
    assert loss >= pred.optimal_loss * (1 - 1e-5)
    assert loss <= pred.optimal_loss * 1.02 + 1e-4, (f, loss, pred.optimal_loss)
    # The kept feature set, not only the loss: per-task FVU matches the prediction.
    fvu = linear_measures.population_fvu(spec.model.encoder_map(params), params["heads"]["kernel"],
                                      task.basis_matrix(), task.spectrum(1.0))
    np.testing.assert_allclose(fvu, pred.fvu, atol=0.03)


@pytest.mark.parametrize("width", [1, 3, 6])
def test_weighted_loss_never_below_optimum(width):
  task, spec, consts = _setup(width, 4, 2, [0, 1, 2, 3], [0.05, 0.25], [3e-2], steps=200,
                              batch_size=32)
  state = ensemble.init_state(spec, consts, 2)
  chunk = jax.jit(partial(ensemble.train_chunk, spec, num_steps=50))
  for _ in range(4):
    state, _ = chunk(state, consts)
    for s in range(4):
      for p, f in enumerate([0.05, 0.25]):
        mixture = task.mixture(f, 1.0)
        params = jax.tree.map(lambda a, s=s, p=p: a[s, p], state["params"])
        opt = theory.predict(mixture, task.spectrum(1.0), width).optimal_loss
        assert _population_loss(task, spec, params, mixture) >= opt * (1 - 1e-5)


def test_evaluate_shapes_and_untrained_fvu_is_one():
  _, spec, consts = _setup(5, 4, 2, [0, 1], [0.05, 0.2, 0.3], [1e-2], eval_samples=20000)
  state = ensemble.init_state(spec, consts, 3)
  out = ensemble.evaluate(spec, state, consts)
  for name in ("fvu", "population_fvu"):
    chex.assert_shape(out[name], (2, 3, 4))
  chex.assert_shape(out["encoder_map"], (2, 3, 5, 8))
  np.testing.assert_allclose(out["population_fvu"], 1.0, atol=1e-6)
  # Zero heads predict 0: the sample FVU is ||z_k||^2 / Tr(C_k), 1 up to sampling error.
  np.testing.assert_allclose(out["fvu"], 1.0, atol=0.05)


def test_nonlinear_encoder_has_no_capture_or_population_fvu():
  task = LinearMixture(3, 2)
  spec = ensemble.EnsembleSpec(EncoderHeads(4, 3, 2, activation="relu"), task,
                               ensemble.TrainSpec(steps=10, batch_size=8, eval_samples=32))
  consts = ensemble.make_constants(task, np.array([0]), {"spectrum": task.spectrum(1.0)[None]},
                                   task.mixture(0.2, 1.0)[None, None], np.array([[1e-2]]))
  out = ensemble.evaluate(spec, ensemble.init_state(spec, consts, 1), consts)
  assert "encoder_map" not in out and np.isnan(out["population_fvu"]).all()
  assert np.isfinite(out["fvu"]).all()


def test_compiled_programs_make_no_lapack_calls():
  # Batched LAPACK custom calls in a multi-device CPU program can deadlock jaxlib's shared
  # thread pool (seen with 2 devices on 2 cores); the step and the evaluation must not use them.
  _, spec, consts = _setup(5, 4, 2, [0, 1], [0.05, 0.2, 0.3], [1e-2])
  state = ensemble.init_state(spec, consts, 3)
  programs = [
      jax.jit(partial(ensemble.evaluate, spec)).lower(state, consts),
      jax.jit(partial(ensemble.train_chunk, spec, num_steps=2)).lower(state, consts)]
  for lowered in programs:
    text = lowered.as_text().lower()
    assert "lapack" not in text and "custom_call" not in text


def _spec_and_constants(task, freqs, rates, seeds=(0,), width=5, steps=100, batch_size=32,
                        measure=None, activation="identity", injection="steady",
                        withhold_steps=0, gaps=None, burst_sizes=None, eval_samples=64):
  measure = ensemble.MeasureSpec() if measure is None else measure
  spec = ensemble.EnsembleSpec(
      EncoderHeads(width, task.num_tasks, task.block_size, activation=activation), task,
      ensemble.TrainSpec(steps=steps, batch_size=batch_size, eval_samples=eval_samples,
                         injection=injection, withhold_steps=withhold_steps), measure)
  shape = (len(seeds), len(freqs))
  spectra = np.stack([task.spectrum(1.0)] * len(seeds))
  mixtures = np.stack([[task.mixture(f, 1.0) for f in freqs]] * len(seeds))
  consts = ensemble.make_constants(
      task, np.array(seeds), {"spectrum": spectra}, mixtures,
      np.broadcast_to(np.array(rates, np.float32), shape),
      None if gaps is None else np.broadcast_to(np.array(gaps), shape),
      None if burst_sizes is None else np.broadcast_to(np.array(burst_sizes), shape))
  return spec, consts


def _init(spec, consts, num_members):
  return jax.jit(partial(ensemble.init_state, spec), static_argnums=1)(consts, num_members)


@pytest.mark.parametrize("num_rare", [1, 2])
def test_bursts_injection_places_exactly_burst_size_rare_examples(num_rare):
  task = LinearMixture(5, 2, num_rare=num_rare)
  steps, withhold, batch = 40, 7, 16
  freqs, gaps = [1 / 32, 1 / 16, 1 / 8], [4, 1, 3]
  sizes = [injection.burst_size(f, g, batch) for f, g in zip(freqs, gaps)]
  assert sizes == [2, 1, 6]
  spec, consts = _spec_and_constants(task, freqs, [1e-2], steps=steps, batch_size=batch,
                                     injection="bursts", withhold_steps=withhold, gaps=gaps,
                                     burst_sizes=sizes)
  rare = ensemble.rare_mask(task)
  uniforms = np.random.default_rng(0).uniform(size=(steps, batch)).astype(np.float32)
  batch_tasks = jax.jit(jax.vmap(jax.vmap(partial(ensemble._batch_tasks, spec),
                                          in_axes=(0, None, None, None, 0)),
                                 in_axes=(None, 0, 0, 0, None)))
  tasks = np.asarray(batch_tasks(uniforms, consts["mixture"][0], consts["gap"][0],
                                 consts["burst_size"][0], np.arange(steps)))
  assert tasks.shape == (3, steps, batch)
  is_rare = rare[tasks]
  for p, (gap, size) in enumerate(zip(gaps, sizes)):
    expected = injection.rare_examples_per_update(steps, withhold, gap, size)
    assert expected[:withhold].sum() == 0 and expected.sum() > 0
    # Every rare task gets exactly the burst size: each its own long-run frequency f.
    for k in np.flatnonzero(rare):
      np.testing.assert_array_equal((tasks[p] == k).sum(-1), expected)
    # The burst's rare examples come first; the rest of the batch is common tasks, all of them.
    np.testing.assert_array_equal(is_rare[p], np.arange(batch) < num_rare * expected[:, None])
    np.testing.assert_array_equal(np.unique(tasks[p][~is_rare[p]]), np.flatnonzero(~rare))


def test_bursts_training_leaves_rare_head_untouched_while_withheld():
  task = LinearMixture(3, 2)
  spec, consts = _spec_and_constants(task, [1 / 16], [1e-2], batch_size=16, injection="bursts",
                                     withhold_steps=3, gaps=[2], burst_sizes=[2])
  step = jax.jit(partial(ensemble.train_chunk, spec, num_steps=1))
  state = _init(spec, consts, 1)
  heads = []
  for _ in range(4):
    state, _ = step(state, consts)
    heads.append(np.asarray(state["params"]["heads"]["kernel"][0, 0]))
  # Task 2 (rare) owns columns 4:6: zero gradient, so Adam leaves it at zero, until update 3.
  for h in heads[:3]:
    np.testing.assert_array_equal(h[:, 4:], 0.0)
    assert np.abs(h[:, :4]).min() > 0
  assert np.abs(heads[3][:, 4:]).min() > 0


_MEASURE_ALL = ensemble.MeasureSpec(allocation=True, interference=True, interference_samples=8)


def _member(tree, s, p):
  return jax.tree.map(lambda a: a[s, p], tree)


def test_evaluate_allocation_and_interference_shapes_and_values():
  task = LinearMixture(4, 2)
  spec, consts = _spec_and_constants(task, [0.2, 0.25], [1e-2], seeds=(0, 1),
                                     measure=_MEASURE_ALL)
  evaluate = jax.jit(partial(ensemble.evaluate, spec))
  state = _init(spec, consts, 2)
  out = evaluate(state, consts)
  for name in ("effective_neurons", "dominant_neurons", "grad_norm"):
    chex.assert_shape(out[name], (2, 2, 4))
  chex.assert_shape(out["cosine"], (2, 2, 4, 4))
  for name in ("common_grad_norm", "rare_grad_norm", "common_rare_cosine", "rare_overwrite"):
    chex.assert_shape(out[name], (2, 2))
  # Zero heads: no task's loss depends on the encoder yet, so no direction and no overwrite.
  assert np.isnan(out["cosine"]).all() and np.isnan(out["common_rare_cosine"]).all()
  np.testing.assert_array_equal(out["grad_norm"], 0.0)
  np.testing.assert_array_equal(out["common_grad_norm"], 0.0)
  np.testing.assert_array_equal(out["rare_overwrite"], 0.0)
  # A random linear encoder: every neuron has weight, so the shares of each neuron sum to one.
  np.testing.assert_allclose(out["effective_neurons"].sum(-1), 5.0, rtol=1e-5)

  state, _ = jax.jit(partial(ensemble.train_chunk, spec, num_steps=8))(state, consts)
  out = evaluate(state, consts)
  cos = np.asarray(out["cosine"])
  assert np.isfinite(cos).all()
  np.testing.assert_allclose(np.diagonal(cos, axis1=-2, axis2=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(cos, np.swapaxes(cos, -1, -2), rtol=1e-5, atol=1e-6)
  assert (np.asarray(out["grad_norm"]) > 0).all()
  for name in ("common_grad_norm", "rare_grad_norm", "common_rare_cosine", "rare_overwrite"):
    assert np.isfinite(out[name]).all(), name
  assert (np.asarray(out["dominant_neurons"]).sum(-1) <= 5).all()

  # One member recomputed directly: its interference batch, gradients and shares.
  s, p = 1, 0

  @jax.jit
  def direct(params, step):
    key = jax.random.fold_in(jax.random.fold_in(rng.key(1, spec.train.rng), 3), step)
    sqrt_spectrum = jnp.sqrt(consts["stream"]["spectrum"][s]).reshape(-1)
    x, z = linear_mixture.sample_inputs(jax.random.fold_in(key, 1), consts["shared"]["basis"],
                                        sqrt_spectrum, 4 * 8)
    grads = interference.per_task_gradients(partial(ensemble.task_loss, spec), params,
                                            (x.reshape(4, 8, -1), z.reshape(4, 8, -1)))
    shares = allocation.linear_shares(spec.model.encoder_map(params), consts["shared"]["basis"],
                                      consts["stream"]["spectrum"][s])
    return grads["encoder"]["kernel"], allocation.task_neurons(shares)

  with jax.default_matmul_precision("highest"):
    encoder_grads, (effective, dominant) = direct(_member(state["params"], s, p), state["step"])
  flat = np.asarray(encoder_grads, np.float64).reshape(4, -1)
  norms = np.linalg.norm(flat, axis=1)
  np.testing.assert_allclose(out["grad_norm"][s, p], norms, rtol=1e-4)
  np.testing.assert_allclose(cos[s, p], flat @ flat.T / np.outer(norms, norms), atol=1e-4)
  np.testing.assert_allclose(out["effective_neurons"][s, p], effective, rtol=1e-4)
  np.testing.assert_array_equal(out["dominant_neurons"][s, p], dominant)


def test_evaluate_ablation_allocation_of_nonlinear_encoder():
  task = LinearMixture(3, 2)
  spec, consts = _spec_and_constants(task, [0.2], [1e-2], measure=_MEASURE_ALL,
                                     activation="relu")
  evaluate = jax.jit(partial(ensemble.evaluate, spec))
  state = _init(spec, consts, 1)
  out = evaluate(state, consts)
  # Zero heads: ablating a neuron changes no output, so no neuron serves a task.
  np.testing.assert_array_equal(out["effective_neurons"], 0.0)
  state, _ = jax.jit(partial(ensemble.train_chunk, spec, num_steps=8))(state, consts)
  out = evaluate(state, consts)
  effective = np.asarray(out["effective_neurons"])
  assert (effective > 0).all() and effective.sum() <= 5 + 1e-5
  assert np.isfinite(out["cosine"]).all()


def test_train_chunk_rare_trace_ends_at_population_fvu_of_final_state():
  task = LinearMixture(4, 2, num_rare=2)
  spec, consts = _spec_and_constants(task, [0.1, 0.2], [3e-2], seeds=(0, 2),
                                     measure=ensemble.MeasureSpec(trace_rare=True))
  state = _init(spec, consts, 2)
  state, loss, trace = jax.jit(partial(ensemble.train_chunk, spec, num_steps=6))(state, consts)
  chex.assert_shape(loss, (2, 2))
  chex.assert_shape(trace["rare_fvu"], (6, 2, 2, 2))
  chex.assert_shape(trace["encoder_map"], (6, 2, 2, 5, 8))
  out = jax.jit(partial(ensemble.evaluate, spec))(state, consts)
  np.testing.assert_allclose(trace["rare_fvu"][-1], out["population_fvu"][..., 2:], rtol=1e-6)
  np.testing.assert_allclose(trace["encoder_map"][-1], out["encoder_map"], rtol=1e-6)
  # The rare tasks are learnt during the chunk (FVU starts at 1 with zero heads).
  assert (np.asarray(trace["rare_fvu"][-1]) < np.asarray(trace["rare_fvu"][0])).all()


def test_compiled_measurements_make_no_lapack_calls():
  task = LinearMixture(4, 2)
  programs = []
  for activation in ("identity", "relu"):
    spec, consts = _spec_and_constants(task, [0.05, 0.2], [1e-2], seeds=(0, 1),
                                       measure=_MEASURE_ALL, activation=activation)
    state = jax.eval_shape(lambda c, spec=spec: ensemble.init_state(spec, c, 2), consts)
    programs.append(jax.jit(partial(ensemble.evaluate, spec)).lower(state, consts))
  spec, consts = _spec_and_constants(task, [0.05, 0.2], [1e-2], seeds=(0, 1),
                                     measure=ensemble.MeasureSpec(trace_rare=True))
  state = jax.eval_shape(lambda c, spec=spec: ensemble.init_state(spec, c, 2), consts)
  programs.append(jax.jit(partial(ensemble.train_chunk, spec, num_steps=2)).lower(state, consts))
  for lowered in programs:
    text = lowered.as_text().lower()
    assert "lapack" not in text and "custom_call" not in text
