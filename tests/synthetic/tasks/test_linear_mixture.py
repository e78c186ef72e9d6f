"""Tests of rare_tasks/synthetic/tasks/linear_mixture.py: geometry, spectrum, mixture, sample
statistics, and the measurements it reads off a model's weights."""

from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rare_tasks.analysis import allocation
from rare_tasks.synthetic.models import EncoderHeads
from rare_tasks.synthetic.tasks import TASKS, LinearMixture, TaskFamily, linear_measures
from rare_tasks.synthetic.tasks import linear_mixture as lm


@pytest.mark.parametrize("basis_seed", [0, 3])
def test_rotation_basis_is_orthogonal(basis_seed):
  task = LinearMixture(num_tasks=3, block_size=4, basis_seed=basis_seed)
  q = task.basis_matrix()
  chex.assert_shape(q, (12, 12))
  assert q.dtype == np.float32
  np.testing.assert_allclose(q.T @ q, np.eye(12), atol=1e-5)
  np.testing.assert_allclose(q @ q.T, np.eye(12), atol=1e-5)
  # A genuine rotation, not the identity.
  assert np.abs(q - np.eye(12)).max() > 0.1


def test_basis_is_fixed_by_its_seed():
  a = LinearMixture(3, 4, basis_seed=1).basis_matrix()
  np.testing.assert_array_equal(a, LinearMixture(3, 4, basis_seed=1).basis_matrix())
  assert not np.allclose(a, LinearMixture(3, 4, basis_seed=2).basis_matrix())


def test_axis_basis_is_identity():
  task = LinearMixture(num_tasks=4, block_size=3, basis="axis")
  np.testing.assert_array_equal(task.basis_matrix(), np.eye(12, dtype=np.float32))


def test_dims_and_rare_tasks():
  task = LinearMixture(num_tasks=5, block_size=3, num_rare=2)
  assert task.input_dim == 15
  assert task.rare_tasks == (3, 4)
  assert LinearMixture(4, 2).rare_tasks == (3,)
  assert TASKS["linear_mixture"] is LinearMixture


def test_spectrum_scalar_beta():
  lam = LinearMixture(num_tasks=2, block_size=4).spectrum(1.0)
  chex.assert_shape(lam, (2, 4))
  expected = np.array([1.0, 1 / 2, 1 / 3, 1 / 4])
  np.testing.assert_allclose(lam, np.stack([expected, expected]))
  lam2 = LinearMixture(num_tasks=2, block_size=3).spectrum(2.0)
  np.testing.assert_allclose(lam2[0], [1.0, 1 / 4, 1 / 9])


def test_spectrum_per_task_beta():
  lam = LinearMixture(num_tasks=3, block_size=3).spectrum([0.0, 1.0, 2.0])
  np.testing.assert_allclose(lam, [[1, 1, 1], [1, 1 / 2, 1 / 3], [1, 1 / 4, 1 / 9]])


def test_spectrum_wrong_number_of_betas_raises():
  with pytest.raises(ValueError):
    LinearMixture(num_tasks=3, block_size=2).spectrum([1.0, 2.0])


@pytest.mark.parametrize("num_rare", [1, 2])
@pytest.mark.parametrize("freq", [1e-3, 0.05, 0.3])
def test_mixture_sums_to_one_with_rare_at_frequency(num_rare, freq):
  task = LinearMixture(num_tasks=6, block_size=2, num_rare=num_rare)
  pi = task.mixture(freq, common_exponent=1.5)
  chex.assert_shape(pi, (6,))
  np.testing.assert_allclose(pi.sum(), 1.0, rtol=1e-12)
  np.testing.assert_allclose(pi[task.rare_tasks, ], freq, rtol=1e-12)
  assert np.all(pi > 0)


def test_mixture_common_tasks_follow_power_law():
  task = LinearMixture(num_tasks=5, block_size=2, num_rare=1)
  a = 1.5
  pi = task.mixture(0.1, common_exponent=a)
  common = pi[:4]
  # pi_k / pi_0 = (k + 1)^-a.
  np.testing.assert_allclose(common / common[0], np.arange(1, 5) ** -a, rtol=1e-12)
  # Golden: weights 1, 2^-1, 3^-1 for a = 1 shared over 1 - 0.25.
  pi1 = LinearMixture(num_tasks=4, block_size=1).mixture(0.25, common_exponent=1.0)
  z = 1 + 1 / 2 + 1 / 3
  np.testing.assert_allclose(pi1, [0.75 / z, 0.75 / (2 * z), 0.75 / (3 * z), 0.25])


def test_mixture_exponent_zero_is_uniform_over_common():
  pi = LinearMixture(num_tasks=5, block_size=1, num_rare=1).mixture(0.2, 0.0)
  np.testing.assert_allclose(pi, [0.2] * 5)


def test_covariances_are_block_projections():
  task = LinearMixture(num_tasks=3, block_size=2, basis_seed=5)
  c = task.covariances(1.0)
  chex.assert_shape(c, (3, 6, 6))
  q = task.basis_matrix().astype(np.float64)
  lam = task.spectrum(1.0)
  # Each C_k has eigenvalues lambda_k on task k's columns, 0 elsewhere.
  for k in range(3):
    np.testing.assert_allclose(q.T @ c[k] @ q,
                               np.diag(np.eye(3)[k].repeat(2) * np.tile(lam[k], 3)), atol=1e-6)
  np.testing.assert_allclose(np.trace(c, axis1=1, axis2=2), lam.sum(-1), rtol=1e-6)


@partial(jax.jit, static_argnums=(3,))
def _sample(key, basis, sqrt_spectrum, batch_size):
  return lm.sample_inputs(key, basis, sqrt_spectrum, batch_size)


def test_sample_covariance_matches_sum_of_task_covariances():
  task = LinearMixture(num_tasks=3, block_size=4, basis_seed=2)
  beta = [0.5, 1.0, 2.0]
  q = jnp.asarray(task.basis_matrix())
  lam = task.spectrum(beta)
  n = 200_000
  x, z = _sample(jax.random.key(0), q, jnp.asarray(np.sqrt(lam).reshape(-1), jnp.float32), n)
  chex.assert_shape((x, z), (n, 12))
  x = np.asarray(x, np.float64)
  emp = x.T @ x / n
  expected = task.covariances(beta).sum(0)
  # Entry standard error is at most sqrt(2 / n) ~ 0.003 (all lambda <= 1).
  np.testing.assert_allclose(emp, expected, atol=0.015)
  np.testing.assert_allclose(np.abs(x.mean(0)), 0.0, atol=0.01)


def test_targets_are_task_blocks_of_inputs():
  task = LinearMixture(num_tasks=3, block_size=2, basis_seed=1)
  q = task.basis_matrix()
  lam = task.spectrum(1.0)
  x, z = _sample(jax.random.key(1), jnp.asarray(q), jnp.asarray(np.sqrt(lam).reshape(-1)), 64)
  x, z = np.asarray(x), np.asarray(z)
  for k in range(3):
    b_k = q[:, 2 * k:2 * k + 2]
    np.testing.assert_allclose(z[:, 2 * k:2 * k + 2], x @ b_k, atol=1e-5)
  # The per-coordinate variances of z are the spectrum.
  assert np.abs(z).max() > 0


def test_targets_variance_is_spectrum():
  task = LinearMixture(num_tasks=2, block_size=3)
  lam = task.spectrum([1.0, 2.0])
  _, z = _sample(jax.random.key(2), jnp.asarray(task.basis_matrix()),
                 jnp.asarray(np.sqrt(lam).reshape(-1), jnp.float32), 100_000)
  np.testing.assert_allclose(np.asarray(z).var(0), lam.reshape(-1), rtol=0.03)


def _model_and_params(activation="identity", width=5):
  task = LinearMixture(num_tasks=3, block_size=2, basis_seed=1)
  model = EncoderHeads(width, 3, 2, activation=activation)
  params = model.init(jax.random.key(0), task.input_dim)
  params["heads"]["kernel"] = jax.random.normal(jax.random.key(1), (width, 6))
  stream = task.stream_constants({"beta": (0.5, 1.0, 2.0)})
  return task, model, params, stream, task.shared_constants()


def test_weight_metrics_of_a_linear_encoder_are_exact_and_none_for_a_nonlinear_one():
  task, model, params, stream, shared = _model_and_params()
  out = task.weight_metrics(model, params, stream, shared)
  w = model.encoder_map(params)
  np.testing.assert_array_equal(out["encoder_map"], w)
  np.testing.assert_allclose(out["population_fvu"], linear_measures.population_fvu(
      w, params["heads"]["kernel"], shared["basis"], stream["spectrum"]), rtol=1e-6)
  task, model, params, stream, shared = _model_and_params("relu")
  out = task.weight_metrics(model, params, stream, shared)
  assert set(out) == {"population_fvu"} and np.isnan(out["population_fvu"]).all()


def test_allocation_shares_are_linear_shares_or_the_ablation_default():
  task, model, params, stream, shared = _model_and_params()
  x, z = _sample(jax.random.key(3), shared["basis"], jnp.sqrt(stream["spectrum"]).reshape(-1), 64)
  h, y = model.apply(params, x)
  tasks = jnp.zeros(64, jnp.int32)
  shares = task.allocation_shares(model, params, h, y, z, tasks, stream, shared)
  np.testing.assert_array_equal(shares, allocation.linear_shares(
      model.encoder_map(params), shared["basis"], stream["spectrum"]))
  task, model, params, stream, shared = _model_and_params("relu")
  h, y = model.apply(params, x)
  shares = task.allocation_shares(model, params, h, y, z, tasks, stream, shared)
  default = TaskFamily.allocation_shares(task, model, params, h, y, z, tasks, stream, shared)
  np.testing.assert_allclose(shares, default, rtol=1e-6)
  np.testing.assert_allclose(shares, allocation.ablation_shares(allocation.ablation_increase(
      h, y, z, params["heads"]["kernel"], stream["spectrum"])), rtol=1e-6)


def test_finish_metrics_turns_the_encoder_map_into_feature_capture():
  task, model, params, stream, shared = _model_and_params()
  w = np.asarray(model.encoder_map(params))
  metrics = {"fvu": np.ones((1, 2, 3), np.float32)}
  host_stream = {k: v[None, None] for k, v in stream.items()}
  out = task.finish_metrics({**metrics, "encoder_map": np.stack([[w, w]])}, host_stream, shared)
  assert "encoder_map" not in out and out["feature_capture"].dtype == np.float32
  expected = linear_measures.feature_capture(w, shared["basis"], stream["spectrum"])
  np.testing.assert_allclose(out["feature_capture"][0, 0], expected, rtol=1e-6)
  without = task.finish_metrics({"fvu": metrics["fvu"]}, host_stream, shared)
  assert without["feature_capture"].shape == (1, 2, 3)
  assert np.isnan(without["feature_capture"]).all()


def test_rare_trace_is_the_rare_tasks_exact_fvu_and_capture():
  task, model, params, stream, shared = _model_and_params()
  trace = task.rare_trace(model, params, stream, shared)
  full = task.exact_fvu(model.encoder_map(params), params["heads"]["kernel"], stream, shared)
  np.testing.assert_allclose(trace["rare_fvu"], full[2:], rtol=1e-6)
  host = {k: np.asarray(v)[None, None, None] for k, v in trace.items()}
  done = task.finish_trace(host, {k: v[None, None, None] for k, v in stream.items()}, shared)
  capture = task.feature_capture(np.asarray(trace["encoder_map"]), stream, shared)
  np.testing.assert_allclose(done["rare_capture"][0, 0, 0], capture[2:], rtol=1e-9)
  assert set(done) == {"rare_fvu", "rare_capture"}


def test_describe_names_the_cells_spectrum_and_exponent():
  text = LinearMixture(4, 2).describe({"beta": 1.5, "common_exponent": 0.5})
  assert text == "with 4 tasks of 2 features (1 rare, common exponent 0.5, beta 1.5)"


@pytest.mark.parametrize("width", [3, 80])  # the gathered and the grouped own heads
def test_training_loss_through_own_heads_equals_the_loss_of_every_head(width):
  task = LinearMixture(num_tasks=4, block_size=3)
  model = EncoderHeads(width, 4, 3, num_hidden_layers=1)
  r = np.random.default_rng(0)
  params = {"encoder": {"kernel": r.standard_normal((12, width))},
            "hidden_0": {"kernel": r.standard_normal((width, width)) / width},
            "heads": {"kernel": r.standard_normal((width, 12))}}
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
  x, z = _sample(jax.random.key(3), jnp.asarray(task.basis_matrix()),
                 jnp.asarray(np.sqrt(task.spectrum(1.0)).reshape(-1)), 50)
  tasks = jnp.asarray(np.minimum(r.zipf(1.5, 50) - 1, 3), jnp.int32)
  every = jax.value_and_grad(TaskFamily.training_loss, argnums=2)
  own = jax.value_and_grad(LinearMixture.training_loss, argnums=2)
  (loss, grads), (ref, ref_grads) = (f(task, model, params, x, z, tasks, {}, {})
                                     for f in (own, every))
  np.testing.assert_allclose(loss, ref, rtol=1e-5)
  chex.assert_trees_all_close(grads, ref_grads, rtol=1e-4, atol=1e-4)
