"""Tests of rare_tasks/synthetic/theory.py: a hand-worked optimum, Eckart-Young, critical widths,
learned widths and frequencies, and the closed form bound to a family."""

import jax.numpy as jnp
import numpy as np
import pytest

from rare_tasks.synthetic import theory
from rare_tasks.synthetic.config import base_config
from rare_tasks.synthetic.grid import expand
from rare_tasks.synthetic.tasks import LinearMixture, linear_measures


def _hand_example(width):
  # K = 2, m = 2, beta = 1: lambda = (1, 1/2) for both tasks.
  return theory.predict(np.array([0.75, 0.25]), np.array([[1.0, 0.5], [1.0, 0.5]]), width)


def test_hand_worked_example_width_two():
  p = _hand_example(2)
  np.testing.assert_allclose(p.utilities, [[0.75, 0.375], [0.25, 0.125]])
  np.testing.assert_array_equal(p.order, [[0, 0], [0, 1], [1, 0], [1, 1]])
  np.testing.assert_array_equal(p.kept, [[True, True], [False, False]])
  np.testing.assert_allclose(p.fvu, [0.0, 1.0])
  np.testing.assert_array_equal(p.critical_width, [1, 3])
  np.testing.assert_allclose(p.optimal_loss, 0.375)


@pytest.mark.parametrize("width,fvu,loss", [
    (0, [1.0, 1.0], 1.5),
    (1, [1 / 3, 1.0], 0.75),
    (3, [0.0, 1 / 3], 0.125),
])
def test_hand_worked_example_other_widths(width, fvu, loss):
  p = _hand_example(width)
  np.testing.assert_allclose(p.fvu, fvu, atol=1e-12)
  np.testing.assert_allclose(p.optimal_loss, loss, atol=1e-12)
  assert p.kept.sum() == width


@pytest.mark.parametrize("extra", [0, 1, 10])
def test_full_width_explains_everything(extra):
  task = LinearMixture(num_tasks=4, block_size=3)
  pi, lam = task.mixture(0.05, 1.0), task.spectrum([0.5, 1.0, 1.5, 2.0])
  p = theory.predict(pi, lam, 12 + extra)
  assert p.kept.all()
  np.testing.assert_allclose(p.fvu, 0.0, atol=1e-12)
  assert p.optimal_loss == 0.0


def test_optimal_loss_is_sum_of_dropped_utilities():
  task = LinearMixture(num_tasks=5, block_size=4, num_rare=2)
  pi, lam = task.mixture(0.03, 1.2), task.spectrum(1.3)
  u = pi[:, None] * lam
  sorted_u = np.sort(u.reshape(-1))[::-1]
  for width in range(0, 21):
    p = theory.predict(pi, lam, width)
    np.testing.assert_allclose(p.optimal_loss, sorted_u[width:].sum(), rtol=1e-12, atol=1e-15)
    # Consistent with the per-task FVU: loss = sum_k pi_k FVU_k Tr(C_k).
    np.testing.assert_allclose(p.optimal_loss, (pi * p.fvu * lam.sum(-1)).sum(), rtol=1e-10,
                               atol=1e-15)


def test_optimum_matches_eckart_young():
  # The pi-weighted loss of a rank-N linear predictor A (in z coordinates) is
  # ||diag(sqrt(pi_k)) (A - I) diag(sqrt(lambda))||_F^2; its minimum over rank N is the sum of
  # the dropped squared singular values of G = diag(sqrt(pi_k lambda_kj)), in any rotated frame.
  rng = np.random.default_rng(0)
  task = LinearMixture(num_tasks=4, block_size=3)
  pi, lam = task.mixture(0.08, 1.0), task.spectrum([0.3, 1.0, 2.0, 0.7])
  g = np.diag(np.sqrt(pi[:, None] * lam).reshape(-1))
  r1, _ = np.linalg.qr(rng.standard_normal((12, 12)))
  r2, _ = np.linalg.qr(rng.standard_normal((12, 12)))
  g_rot = r1 @ g @ r2
  u, s, vt = np.linalg.svd(g_rot)
  for width in range(13):
    best = (u[:, :width] * s[:width]) @ vt[:width]
    err = ((g_rot - best) ** 2).sum()
    np.testing.assert_allclose(theory.predict(pi, lam, width).optimal_loss, err, rtol=1e-9,
                               atol=1e-12)


def test_optimal_model_realises_the_prediction():
  # The model keeping exactly the predicted features has the predicted per-task FVU.
  task = LinearMixture(num_tasks=3, block_size=3, basis_seed=4)
  pi, lam = task.mixture(0.1, 1.0), task.spectrum([1.0, 2.0, 0.5])
  width = 4
  p = theory.predict(pi, lam, width)
  q = task.basis_matrix()
  kept = np.flatnonzero(p.kept.reshape(-1))
  encoder_map = q[:, kept].T  # (N, d): rows along the kept features
  heads = np.zeros((width, 9), np.float32)
  heads[np.arange(width), kept] = 1.0
  fvu = linear_measures.population_fvu(jnp.asarray(encoder_map), jnp.asarray(heads), jnp.asarray(q),
                                    jnp.asarray(lam, jnp.float32))
  np.testing.assert_allclose(fvu, p.fvu, atol=1e-5)
  np.testing.assert_allclose((pi * np.asarray(fvu) * lam.sum(-1)).sum(), p.optimal_loss,
                             rtol=1e-4)


def test_ties_go_to_lower_task_then_lower_feature():
  u = np.array([[1.0, 0.5], [1.0, 0.5], [0.5, 0.5]])
  np.testing.assert_array_equal(theory.utility_order(u),
                                [[0, 0], [1, 0], [0, 1], [1, 1], [2, 0], [2, 1]])
  p = theory.predict(np.ones(3) / 3, u, 3)
  np.testing.assert_array_equal(p.kept, [[True, True], [True, False], [False, False]])
  np.testing.assert_array_equal(p.critical_width, [1, 2, 5])


def test_ties_are_stable_on_large_arrays():
  # Equal utilities across 20 tasks: every task's top feature ties, the lower task wins.
  spectrum = np.tile([1.0, 0.5], (20, 1))
  p = theory.predict(np.full(20, 0.05), spectrum, 20)
  np.testing.assert_array_equal(p.order[:20], np.stack([np.arange(20), np.zeros(20, int)], -1))
  np.testing.assert_array_equal(p.critical_width, np.arange(1, 21))
  np.testing.assert_array_equal(p.kept[:, 0], True)
  np.testing.assert_array_equal(p.kept[:, 1], False)


def test_critical_width_is_where_top_feature_enters():
  task = LinearMixture(num_tasks=6, block_size=4)
  pi, lam = task.mixture(0.02, 1.0), task.spectrum(1.0)
  cw = theory.predict(pi, lam, 1).critical_width
  for k in range(6):
    assert theory.predict(pi, lam, int(cw[k])).kept[k, 0]
    assert not theory.predict(pi, lam, int(cw[k]) - 1).kept[k, 0]


def test_critical_width_non_increasing_in_rare_frequency():
  task = LinearMixture(num_tasks=16, block_size=8)
  lam = task.spectrum(1.0)
  freqs = np.geomspace(1e-4, 0.5, 60)
  cws = [theory.predict(task.mixture(f, 1.5), lam, 32).critical_width[-1] for f in freqs]
  assert np.all(np.diff(cws) <= 0)
  assert cws[0] > cws[-1]
  assert cws[-1] == 1  # at f = 0.5 the rare task is the most frequent


def test_critical_widths_of_default_preset():
  # configs/width_by_frequency.py places its frequencies at these critical widths.
  task = LinearMixture(num_tasks=16, block_size=8)
  lam = task.spectrum(1.0)
  freqs = (3e-4, 3e-3, 1e-2, 2.4e-2, 5.7e-2, 0.3)
  cws = [int(theory.predict(task.mixture(f, 1.5), lam, 1).critical_width[-1]) for f in freqs]
  assert cws == [121, 87, 46, 23, 11, 2]


def test_fvu_non_increasing_in_width():
  task = LinearMixture(num_tasks=4, block_size=5)
  pi, lam = task.mixture(0.01, 1.0), task.spectrum(0.8)
  fvus = np.stack([theory.predict(pi, lam, n).fvu for n in range(21)])
  assert np.all(np.diff(fvus, axis=0) <= 1e-12)
  assert np.all((fvus >= 0) & (fvus <= 1))


def _brute_force_width(mixture, spectrum, threshold):
  widths = []
  for k in range(len(mixture)):
    width = spectrum.size + 1
    for n in range(1, spectrum.size + 1):
      if theory.predict(mixture, spectrum, n).fvu[k] <= threshold:
        width = n
        break
    widths.append(width)
  return np.array(widths)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.8, 0.99])
def test_learned_width_equals_brute_force(threshold):
  task = LinearMixture(num_tasks=4, block_size=3, spectrum_normalization="trace")
  spectrum = task.spectrum([0.0, 0.5, 2.0, 3.0])
  mixture = task.mixture(0.05, 1.0)
  widths = theory.learned_width(mixture, spectrum, threshold)
  np.testing.assert_array_equal(widths, _brute_force_width(mixture, spectrum, threshold))
  assert widths.dtype.kind == "i"
  assert np.all((widths >= 1) & (widths <= spectrum.size))


def test_learned_width_brute_force_random_mixtures():
  rng = np.random.default_rng(0)
  task = LinearMixture(num_tasks=5, block_size=4, spectrum_normalization="trace")
  for _ in range(5):
    spectrum = task.spectrum(rng.uniform(0.0, 3.0, size=5))
    mixture = rng.dirichlet(np.ones(5))
    threshold = rng.uniform(0.1, 0.9)
    np.testing.assert_array_equal(theory.learned_width(mixture, spectrum, threshold),
                                  _brute_force_width(mixture, spectrum, threshold))


def test_learned_width_of_negative_threshold_is_never():
  spectrum = np.ones((2, 3))
  widths = theory.learned_width(np.array([0.5, 0.5]), spectrum, -0.1)
  np.testing.assert_array_equal(widths, [7, 7])


def test_frequent_complex_task_is_learned_after_a_rarer_simple_one():
  # Task 0: frequent (pi 0.7), complex (beta 0: four equal features). Task 1: rarer (pi 0.3),
  # simple (beta 3: one dominant feature). Learned at FVU <= 0.8.
  betas, mixture = [0.0, 3.0], np.array([0.7, 0.3])
  trace = LinearMixture(2, 4, spectrum_normalization="trace").spectrum(betas)
  # Trace: utilities 0.175 per feature of task 0, 0.3 * 0.849 = 0.255 for task 1's top feature,
  # so task 1 is learned at width 1 and task 0 (one feature leaves FVU 0.75) at width 2.
  np.testing.assert_array_equal(theory.learned_width(mixture, trace, 0.8), [2, 1])
  # Top: task 0's four features (utility 0.7 each) all come before task 1's top one (0.3).
  top = LinearMixture(2, 4, spectrum_normalization="top").spectrum(betas)
  np.testing.assert_array_equal(theory.learned_width(mixture, top, 0.8), [1, 5])


def _values(width, beta=1.0, exponent=1.5):
  return {"width": width, "beta": beta, "common_exponent": exponent}


def test_min_frequency_is_the_learned_threshold_of_the_closed_form():
  task = LinearMixture(8, 4)
  bound = task.theory
  for width in (3, 6, 12):
    f = bound.min_frequency(_values(width), 0.8, 0.5)
    fvu = lambda f, w=width: theory.predict(task.mixture(f, 1.5), task.spectrum(1.0), w).fvu[-1]  # noqa: E731
    assert fvu(f * 1.0001) <= 0.8 < fvu(f * 0.9999)
  # Wider models need less; a width that cannot keep the rare task's top feature under the
  # bound never learns it.
  fs = [bound.min_frequency(_values(w), 0.8, 0.5) for w in (3, 6, 12)]
  assert fs[0] > fs[1] > fs[2]
  assert np.isnan(bound.min_frequency(_values(1), 0.8, 0.01))


def test_min_width_inverts_it():
  bound = LinearMixture(8, 4).theory
  f = bound.min_frequency(_values(6), 0.8, 0.5)
  assert bound.min_width(_values(6), f * 1.001, 0.8) <= 6
  assert bound.min_width(_values(6), f * 0.999, 0.8) > 6


def test_the_bound_closed_form_is_the_functions_at_a_cells_values():
  c = base_config()
  c.task.num_tasks, c.task.block_size = 4, 3
  c.grid.width, c.grid.frequency = (2, 5), (0.05, 0.2)
  task = LinearMixture(4, 3)
  bound = task.theory
  assert bound is task.theory  # made once per family
  for cell in expand(c, task):
    v = cell.values
    mixture, spectrum = task.mixture(v["rare_frequency"], 1.0), task.spectrum(1.0)
    direct = theory.predict(mixture, spectrum, v["width"])
    np.testing.assert_array_equal(bound.predict(cell).fvu, direct.fvu)
    np.testing.assert_array_equal(bound.learned_width(cell, 0.8),
                                  theory.learned_width(mixture, spectrum, 0.8))
    np.testing.assert_array_equal(bound.top_utility(cell), direct.utilities.max(-1))
    assert bound.critical_width(v, v["rare_frequency"]) == direct.critical_width[-1]
  curve = bound.optimum_curve(_values(0, exponent=1.0) | {"rare_frequency": 0.05}, [1, 4])
  mixture = task.mixture(0.05, 1.0)
  for n, total, per_task in zip(curve["widths"], curve["total"], np.array(curve["tasks"]).T):
    fvu = theory.predict(mixture, task.spectrum(1.0), n).fvu
    np.testing.assert_allclose(total, fvu @ mixture, rtol=1e-12)
    np.testing.assert_allclose(per_task, fvu, rtol=1e-12)
