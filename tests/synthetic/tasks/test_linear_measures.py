"""Tests of rare_tasks/linear_measures.py: FVU (sample and exact), feature capture, the masked
loss."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rare_tasks.synthetic.tasks import LinearMixture, linear_measures
from rare_tasks.synthetic.tasks import linear_mixture as lm

K, M = 3, 4
D = K * M

# Jitted once per shape: one compile instead of one dispatch compile per op.
_capture = linear_measures.feature_capture  # numpy, on the host
_population_fvu = jax.jit(linear_measures.population_fvu)


@pytest.fixture(scope="module")
def task():
  return LinearMixture(num_tasks=K, block_size=M, basis_seed=7)


@pytest.fixture(scope="module")
def lam(task):
  return jnp.asarray(task.spectrum([0.5, 1.0, 2.0]), jnp.float32)


@pytest.fixture(scope="module")
def basis(task):
  return jnp.asarray(task.basis_matrix())


@pytest.fixture(scope="module")
def sample(basis, lam):
  sample = jax.jit(lm.sample_inputs, static_argnums=3)
  return sample(jax.random.key(0), basis, jnp.sqrt(lam).reshape(-1), 100_000)


def test_per_task_squared_error_golden():
  out = jnp.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
  tgt = jnp.array([[0.0, 0.0, 3.0, 2.0], [1.0, 1.0, -1.0, 2.0]])
  err = linear_measures.per_task_squared_error(out, tgt, 2)
  np.testing.assert_allclose(err, [[5.0, 4.0], [2.0, 5.0]])


def test_fvu_of_perfect_and_zero_outputs(sample, lam):
  _, z = sample
  np.testing.assert_array_equal(linear_measures.fvu(z, z, lam), np.zeros(K))
  zero = linear_measures.fvu(jnp.zeros_like(z), z, lam)
  chex.assert_shape(zero, (K,))
  np.testing.assert_allclose(zero, 1.0, rtol=0.02)


def test_fvu_golden():
  # K = 2, m = 1, lambda = (2, 4); errors per example (1, 0), (3, 2) -> mse (5, 2).
  out = jnp.array([[1.0, 0.0], [3.0, 2.0]])
  fvu = linear_measures.fvu(out, jnp.zeros((2, 2)), jnp.array([[2.0], [4.0]]))
  np.testing.assert_allclose(fvu, [2.5, 0.5])


def test_population_fvu_of_identity_model_is_zero(basis, lam):
  # N = d, encoder_map = Q^T, heads = I: the model returns z exactly.
  fvu = _population_fvu(basis.T, jnp.eye(D), basis, lam)
  chex.assert_shape(fvu, (K,))
  np.testing.assert_allclose(fvu, 0.0, atol=1e-5)


def test_population_fvu_of_zero_heads_is_one(basis, lam):
  enc = np.random.default_rng(1).standard_normal((6, D)).astype(np.float32)
  fvu = _population_fvu(enc, jnp.zeros((6, D)), basis, lam)
  np.testing.assert_array_equal(fvu, np.ones(K))


def test_population_fvu_of_half_scaled_identity(basis, lam):
  # yhat = z / 2 leaves error z / 2: FVU 1/4 for every task.
  fvu = _population_fvu(basis.T, 0.5 * jnp.eye(D), basis, lam)
  np.testing.assert_allclose(fvu, 0.25, rtol=1e-5)


def test_population_fvu_agrees_with_sample_fvu(sample, basis, lam):
  x, z = sample
  n = 6
  rng = np.random.default_rng(2)
  q = np.asarray(basis)
  enc = rng.standard_normal((n, D)) / np.sqrt(D)
  heads = rng.standard_normal((n, D)) / np.sqrt(n)
  # Put part of the signal in so that FVUs differ from 1 and between tasks.
  cols = [0, 4, 5, 8]
  enc[:4] += q.T[cols]
  heads[np.arange(4), cols] += 1.0
  enc, heads = jnp.asarray(enc, jnp.float32), jnp.asarray(heads, jnp.float32)
  pop = _population_fvu(enc, heads, basis, lam)
  outputs = (x @ enc.T) @ heads
  samp = linear_measures.fvu(outputs, z, lam)
  np.testing.assert_allclose(samp, pop, rtol=0.03)
  assert np.ptp(np.asarray(pop)) > 0.05


def test_feature_capture_of_task_block(basis, lam):
  for k in range(K):
    enc = basis[:, k * M:(k + 1) * M].T  # rows = B_k^T
    cap = _capture(enc, basis, lam)
    chex.assert_shape(cap, (K,))
    np.testing.assert_allclose(cap, np.eye(K)[k], atol=1e-5)


@pytest.mark.parametrize("k,j", [(0, 0), (1, 2), (2, 3)])
def test_feature_capture_of_single_feature(basis, lam, k, j):
  enc = basis[:, k * M + j][None, :]
  cap = _capture(enc, basis, lam)
  expected = np.zeros(K)
  expected[k] = lam[k, j] / lam[k].sum()
  np.testing.assert_allclose(cap, expected, atol=1e-5)


def test_feature_capture_depends_only_on_row_space(basis, lam):
  rng = np.random.default_rng(4)
  enc = rng.standard_normal((5, D)).astype(np.float32)
  mix = (rng.standard_normal((5, 5)) + 3 * np.eye(5)).astype(np.float32)
  a = _capture(enc, basis, lam)
  b = _capture(mix @ enc, basis, lam)
  np.testing.assert_allclose(a, b, atol=1e-4)
  # Duplicating a row does not add a direction.
  c = _capture(np.concatenate([enc, enc[:1] * 2.0]), basis, lam)
  np.testing.assert_allclose(a, c, atol=1e-4)
  assert np.all((np.asarray(a) > 0) & (np.asarray(a) < 1))


def test_feature_capture_full_rank_is_one(basis, lam):
  enc = np.random.default_rng(6).standard_normal((D, D)).astype(np.float32)
  np.testing.assert_allclose(_capture(enc, basis, lam), 1.0, atol=1e-4)


def test_feature_capture_ignores_tiny_directions(basis, lam):
  # A direction 1e-7 times the largest carries no signal and does not count.
  enc = jnp.stack([basis[:, 0], 1e-7 * basis[:, M]])
  np.testing.assert_allclose(_capture(enc, basis, lam),
                             [lam[0, 0] / lam[0].sum(), 0.0, 0.0], atol=1e-5)


def test_masked_loss_golden():
  # K = 2, m = 2. Example 0 is task 0 (error 1 + 4), example 1 task 1 (error 9 + 0),
  # example 2 task 0 (error 0); the other heads' errors must not count.
  out = jnp.array([[1.0, 2.0, 100.0, 100.0],
                   [-50.0, 7.0, 3.0, 1.0],
                   [0.5, 0.5, 9.0, 9.0]])
  tgt = jnp.array([[0.0, 0.0, 0.0, 0.0],
                   [0.0, 0.0, 0.0, 1.0],
                   [0.5, 0.5, 0.0, 0.0]])
  loss = linear_measures.masked_loss(out, tgt, jnp.array([0, 1, 0]), 2)
  np.testing.assert_allclose(loss, (5.0 + 9.0 + 0.0) / 3)


def test_own_head_loss_is_the_masked_loss_from_the_own_heads_alone():
  # The golden case above, each example given its own head's outputs only.
  out = jnp.array([[1.0, 2.0], [3.0, 1.0], [0.5, 0.5]])
  tgt = jnp.array([[0.0, 0.0, 0.0, 0.0],
                   [0.0, 0.0, 0.0, 1.0],
                   [0.5, 0.5, 0.0, 0.0]])
  loss = linear_measures.own_head_loss(out, tgt, jnp.array([0, 1, 0]), 2)
  np.testing.assert_allclose(loss, (5.0 + 9.0 + 0.0) / 3)


def test_masked_loss_gradient_only_reaches_own_head():
  out = jnp.ones((2, 4))
  tgt = jnp.zeros((2, 4))
  g = jax.grad(linear_measures.masked_loss)(out, tgt, jnp.array([1, 0]), 2)
  np.testing.assert_allclose(g, [[0, 0, 1, 1], [1, 1, 0, 0]])


def test_feature_capture_is_batched_over_leading_axes(basis, lam):
  rng = np.random.default_rng(0)
  maps = rng.standard_normal((2, 3, 5, basis.shape[0]))
  spectra = np.stack([lam, lam ** 2])[:, None]  # (2, 1, K, m): one spectrum per stream
  batched = _capture(maps, basis, spectra)
  assert batched.shape == (2, 3, lam.shape[0])
  for s in range(2):
    for p in range(3):
      np.testing.assert_allclose(batched[s, p], _capture(maps[s, p], basis, spectra[s, 0]))


def _capture_by_eigh(monkeypatch, *args):
  calls = []

  def no_cholesky(*a):
    calls.append(a)
    return None

  with monkeypatch.context() as m:
    m.setattr(linear_measures, "_captured_by_cholesky", no_cholesky)
    result = _capture(*args)
  assert len(calls) == 1  # the fast path was asked and declined: eigh computed the result
  return result


@pytest.mark.parametrize("n", [1, 3, 7, D])
def test_feature_capture_cholesky_and_eigh_paths_agree(monkeypatch, basis, lam, n):
  rng = np.random.default_rng(n)
  maps = rng.standard_normal((2, n, D))
  q = np.asarray(basis, np.float64)
  gram = maps @ np.swapaxes(maps, -1, -2)
  assert linear_measures._captured_by_cholesky(gram, maps @ q, 1e-5) is not None
  fast = _capture(maps, basis, lam)
  slow = _capture_by_eigh(monkeypatch, maps, basis, lam)
  assert fast.shape == slow.shape == (2, K)
  np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-10)
  assert np.all((fast > 0) & (fast <= 1 + 1e-6))  # Q is float32: norms 1 to 1e-7


def test_feature_capture_of_rank_deficient_map_falls_back_to_eigh(basis, lam):
  rng = np.random.default_rng(11)
  rows = rng.standard_normal((4, D))
  # N = 6 > rank 4: two rows repeated (one of them rescaled).
  enc = np.concatenate([rows, rows[:1], -2.0 * rows[2:3]])
  q = np.asarray(basis, np.float64)
  assert linear_measures._captured_by_cholesky(enc @ enc.T, enc @ q, 1e-5) is None
  cap = _capture(enc, basis, lam)
  np.testing.assert_allclose(cap, _capture(rows, basis, lam), atol=1e-10)
  assert np.all((cap > 0) & (cap < 1))


def test_feature_capture_of_one_task_block_matches_all_tasks(basis, lam):
  rng = np.random.default_rng(12)
  maps = rng.standard_normal((3, 5, D))
  all_tasks = _capture(maps, basis, lam)
  for k in range(K):
    block = np.asarray(basis)[:, k * M:(k + 1) * M]
    one = _capture(maps, block, np.asarray(lam)[k:k + 1])
    assert one.shape == (3, 1)
    np.testing.assert_allclose(one[:, 0], all_tasks[:, k], atol=1e-12)
