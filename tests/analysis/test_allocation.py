"""Tests of rare_tasks/analysis/allocation.py: linear shares, ablation increases and shares, task
neurons."""

import jax
import jax.numpy as jnp
import numpy as np

from rare_tasks.analysis import allocation
from rare_tasks.synthetic.models import EncoderHeads
from rare_tasks.synthetic.tasks import LinearMixture, linear_measures, linear_mixture


def test_linear_shares_rows_sum_to_one_for_random_encoder():
  task = LinearMixture(4, 3, basis_seed=2)
  rng = np.random.default_rng(0)
  w = rng.standard_normal((7, task.input_dim)).astype(np.float32)
  spectrum = task.spectrum([0.5, 1.0, 1.5, 2.0])
  shares = np.asarray(allocation.linear_shares(w, task.basis_matrix(), spectrum))
  assert shares.shape == (7, 4)
  assert (shares >= 0).all() and (shares <= 1).all()
  np.testing.assert_allclose(shares.sum(-1), 1.0, rtol=1e-5)
  # A neuron's share does not depend on the scale of its weights.
  scaled = allocation.linear_shares(w * np.arange(1, 8)[:, None], task.basis_matrix(), spectrum)
  np.testing.assert_allclose(scaled, shares, rtol=1e-4, atol=1e-6)


def test_linear_shares_one_hot_for_neurons_inside_one_block():
  task = LinearMixture(3, 2, basis="axis")
  rng = np.random.default_rng(1)
  owner = np.array([2, 0, 1, 0, 2])
  w = np.zeros((5, task.input_dim), np.float32)
  for i, k in enumerate(owner):
    w[i, 2 * k:2 * k + 2] = rng.standard_normal(2)
  shares = allocation.linear_shares(w, task.basis_matrix(), task.spectrum(1.0))
  np.testing.assert_array_equal(shares, np.eye(3)[owner])


def test_linear_shares_golden():
  # K = 2, m = 2, beta = 1: lambda = [[1, 1/2], [1, 1/2]]; axis basis.
  task = LinearMixture(2, 2, basis="axis")
  spectrum = task.spectrum(1.0)
  np.testing.assert_allclose(spectrum, [[1.0, 0.5], [1.0, 0.5]])
  w = np.array([[1.0, 2.0, 3.0, 0.0],   # weights^2 * lambda = (1, 2 | 9, 0) -> (3, 9) / 12
                [0.0, 0.0, 0.0, 0.0],   # no input weights: no share
                [1.0, 1.0, 1.0, 1.0],   # (1, 0.5 | 1, 0.5) -> (1.5, 1.5) / 3
                [0.0, 4.0, 1.0, 0.0]],  # (0, 8 | 1, 0) -> (8, 1) / 9
               np.float32)
  shares = allocation.linear_shares(w, task.basis_matrix(), spectrum)
  np.testing.assert_allclose(shares, [[0.25, 0.75], [0.0, 0.0], [0.5, 0.5], [8 / 9, 1 / 9]],
                             rtol=1e-6)


def test_linear_shares_golden_in_rotated_basis():
  # K = 2, m = 1, Q a 45 degree rotation, lambda = (2, 1): w = e_1 has w.Q = (c, -c), c^2 = 1/2,
  # so the weights are (2 * 1/2, 1 * 1/2) and the shares (2/3, 1/3).
  c = np.float32(np.sqrt(0.5))
  q = np.array([[c, -c], [c, c]], np.float32)
  shares = allocation.linear_shares(np.array([[1.0, 0.0]], np.float32), q,
                                    np.array([[2.0], [1.0]]))
  np.testing.assert_allclose(shares, [[2 / 3, 1 / 3]], rtol=1e-6)


def _relu_model_and_data(width=6, num_tasks=3, block_size=2, batch=512):
  task = LinearMixture(num_tasks, block_size, basis_seed=3)
  model = EncoderHeads(width, num_tasks, block_size, activation="relu", num_hidden_layers=1)
  spectrum = jnp.asarray(task.spectrum([0.5, 1.0, 2.0]), jnp.float32)
  random_heads = np.random.default_rng(1).standard_normal((width, num_tasks * block_size))

  @jax.jit  # one compile for init and sampling
  def make(heads):
    params = model.init(jax.random.key(0), task.input_dim)
    zero_heads = jnp.all(params["heads"]["kernel"] == 0)
    params["heads"]["kernel"] = heads  # replace the zero-initialised heads
    x, z = linear_mixture.sample_inputs(jax.random.key(2), jnp.asarray(task.basis_matrix()),
                                        jnp.sqrt(spectrum).reshape(-1), batch)
    return params, zero_heads, x, z

  params, zero_heads, x, z = make(jnp.asarray(random_heads, jnp.float32))
  assert zero_heads
  return model, params, spectrum, x, z


def test_ablation_increase_matches_explicit_per_neuron_ablation():
  model, params, spectrum, x, z = _relu_model_and_data()
  apply, fvu = jax.jit(model.apply), jax.jit(linear_measures.fvu)  # one compile each
  h, y = apply(params, x)
  heads = params["heads"]["kernel"]
  increase = np.asarray(jax.jit(allocation.ablation_increase)(h, y, z, heads, spectrum))
  assert increase.shape == (6, 3)
  assert (np.asarray(h) > 0).any(0).all()  # every neuron is active on some input
  base = np.asarray(fvu(y, z, spectrum))
  expected = []
  for i in range(6):
    # Ablating neuron i (h_i = 0) is the same as zeroing row i of the heads kernel.
    ablated = {**params, "heads": {"kernel": heads.at[i].set(0.0)}}
    _, y_i = apply(ablated, x)
    expected.append(np.asarray(fvu(y_i, z, spectrum)) - base)
  expected = np.stack(expected)
  scale = np.abs(expected).max()
  assert scale > 0.1  # the ablations do change the FVU
  np.testing.assert_allclose(increase, expected, atol=1e-5 * max(scale, base.max()))
  # Both signs occur on random heads: ablating some neurons helps some tasks.
  assert (increase > 0).any() and (increase < 0).any()


def test_ablation_shares_golden():
  increase = jnp.array([[1.0, 3.0, -2.0],
                        [-1.0, -0.5, 0.0],   # ablation hurts no task: serves none
                        [0.0, 0.0, 0.0],     # dead neuron
                        [2.0, 0.0, 2.0],
                        [0.0, 1e-3, 0.0]])
  shares = np.asarray(allocation.ablation_shares(increase))
  np.testing.assert_allclose(shares, [[0.25, 0.75, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0],
                                      [0.5, 0.0, 0.5], [0.0, 1.0, 0.0]], rtol=1e-6)


def test_ablation_shares_rows_sum_to_one_where_some_task_is_hurt():
  increase = np.random.default_rng(4).standard_normal((50, 4)).astype(np.float32) - 0.5
  shares = np.asarray(allocation.ablation_shares(increase))
  served = (np.asarray(increase) > 0).any(-1)
  assert served.any() and (~served).any()
  np.testing.assert_allclose(shares[served].sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(shares[~served], 0.0)
  assert (shares >= 0).all()
  np.testing.assert_array_equal(shares == 0, np.asarray(increase) <= 0)


def test_task_neurons_golden():
  shares = jnp.array([[0.6, 0.4, 0.0],
                      [0.5, 0.5, 0.0],   # exactly one half dominates nothing
                      [0.1, 0.0, 0.9],
                      [0.0, 0.0, 0.0],
                      [0.2, 0.7, 0.1]])
  effective, dominant = allocation.task_neurons(shares)
  np.testing.assert_allclose(effective, [1.4, 1.6, 1.0], rtol=1e-6)
  np.testing.assert_array_equal(dominant, [1.0, 1.0, 1.0])
  assert dominant.dtype == jnp.float32
