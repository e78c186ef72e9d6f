"""Tests of rare_tasks/ensemble.py: golden values, member independence, the closed-form optimum."""

from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rare_tasks import ensemble, measurements, theory
from rare_tasks.models import EncoderHeads
from rare_tasks.tasks import LinearMixture, linear_mixture


def _setup(width, num_tasks, block_size, seeds, freqs, rates, steps=100, batch_size=8,
           exponent=1.0, schedule="constant", eval_samples=64):
  task = LinearMixture(num_tasks, block_size)
  spec = ensemble.EnsembleSpec(
      EncoderHeads(width, num_tasks, block_size), task,
      ensemble.TrainSpec(steps=steps, batch_size=batch_size, schedule=schedule,
                         final_lr_fraction=0.01, eval_samples=eval_samples))
  spectra = np.stack([task.spectrum(1.0)] * len(seeds))
  mixtures = np.stack([[task.mixture(f, exponent) for f in freqs]] * len(seeds))
  consts = ensemble.make_constants(task, np.array(seeds), spectra, mixtures,
                                   np.broadcast_to(np.array(rates, np.float32),
                                                   (len(seeds), len(freqs))))
  return task, spec, consts


def test_golden_losses_of_first_steps():
  _, spec, consts = _setup(4, 3, 2, [0], [0.2], [1e-2])
  state = ensemble.init_state(spec, consts, 1)
  losses = []
  for _ in range(3):
    state, loss = ensemble.train_step(spec, state, consts)
    losses.append(float(loss[0, 0]))
  np.testing.assert_allclose(losses, [1.3595123, 2.3223104, 1.0233324], rtol=1e-5)
  assert int(state["step"]) == 3


def test_first_loss_is_target_energy_because_heads_start_at_zero():
  task, spec, consts = _setup(4, 3, 2, [5], [0.2], [1e-2], batch_size=64)
  state = ensemble.init_state(spec, consts, 1)
  _, loss = ensemble.train_step(spec, state, consts)
  # Recompute the step-0 batch by hand: zero heads predict 0, so the loss is mean ||z_task||^2.
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(5), 2), 0)
  kx, ku = jax.random.split(key)
  _, z = linear_mixture.sample_inputs(kx, consts["basis"],
                                      jnp.sqrt(consts["spectrum"][0]).reshape(-1), 64)
  tasks = linear_mixture.assign_tasks(linear_mixture.sample_task_uniforms(ku, 64),
                                      jnp.asarray(consts["mixture"][0, 0]))
  expected = jnp.mean(jnp.sum(z.reshape(64, 3, 2) ** 2, -1)[jnp.arange(64), tasks])
  np.testing.assert_allclose(float(loss[0, 0]), float(expected), rtol=1e-6)


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
  fvu = measurements.population_fvu(w, params["heads"]["kernel"], task.basis_matrix(),
                                    task.spectrum(1.0))
  return float(np.sum(np.asarray(fvu) * task.spectrum(1.0).sum(-1) * mixture))


def test_trained_linear_model_reaches_closed_form_optimum():
  freqs = [0.02, 0.1, 0.3]
  task, spec, consts = _setup(3, 4, 2, [0], freqs, [1e-2], steps=3000, batch_size=128,
                              exponent=1.0, schedule="cosine")
  state = ensemble.init_state(spec, consts, len(freqs))
  state, _ = jax.jit(partial(ensemble.train_chunk, spec, num_steps=3000))(state, consts)
  for p, f in enumerate(freqs):
    mixture = task.mixture(f, 1.0)
    pred = theory.predict(mixture, task.spectrum(1.0), 3)
    params = jax.tree.map(lambda a, p=p: a[0, p], state["params"])
    loss = _population_loss(task, spec, params, mixture)
    assert loss >= pred.optimal_loss * (1 - 1e-5)
    assert loss <= pred.optimal_loss * 1.02 + 1e-4, (f, loss, pred.optimal_loss)
    # The kept feature set, not only the loss: per-task FVU matches the prediction.
    fvu = measurements.population_fvu(spec.model.encoder_map(params), params["heads"]["kernel"],
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
  consts = ensemble.make_constants(task, np.array([0]), task.spectrum(1.0)[None],
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
