"""Tests of rare_tasks/analysis/probes.py: the order read-out on planted, noisy and degenerate
representations, and the Fourier spectrum and mode counts on planted waves and noise."""

import math

import numpy as np
import pytest

from rare_tasks.analysis import probes


def _planted_order(p, d, seed, noise=0.1, embed=lambda t: t):
  """Features embed(rank / (p - 1)) along one random direction plus isotropic noise."""
  rng = np.random.default_rng(seed)
  order = rng.permutation(p).astype(np.float64)
  direction = rng.normal(size=d)
  direction /= np.linalg.norm(direction)
  signal = embed(order / (p - 1))
  features = np.outer(signal, direction) + noise * signal.std() * rng.normal(size=(p, d))
  return features, order


def _reference_r2(features, order, k, leaky=False):
  """order_r2 written out fold by fold; leaky=True fits the PCA on all rows instead."""
  p = len(order)
  predictions = np.empty(p)
  for test in probes._folds(p, 5):
    train = np.array([i for i in range(p) if i not in set(test.tolist())])
    fit_rows = np.arange(p) if leaky else train
    mean = features[fit_rows].mean(axis=0)
    vt = np.linalg.svd(features[fit_rows] - mean)[2][:k]
    z_train = (features[train] - mean) @ vt.T
    design = np.column_stack([np.ones(len(train)), z_train])
    coef = np.linalg.lstsq(design, order[train], rcond=None)[0]
    predictions[test] = coef[0] + (features[test] - mean) @ vt.T @ coef[1:]
  return 1 - np.sum((order - predictions) ** 2) / np.sum((order - order.mean()) ** 2)


@pytest.mark.parametrize("p", [16, 100])
def test_planted_order_is_read_out(p):
  for seed in range(3):
    features, order = _planted_order(p, 32, seed)
    assert probes.order_r2(features, order) > 0.95


def test_noise_gives_no_order():
  r2 = [probes.order_r2(np.random.default_rng(s).normal(size=(100, 32)),
                        np.random.default_rng(100 + s).permutation(100)) for s in range(4)]
  assert np.isfinite(r2).all()
  assert np.mean(r2) < 0.2, f"mean R^2 over seeds on noise: {np.mean(r2):.3f}"


def test_monotone_nonlinear_embedding_is_read_out_above_noise():
  def embed(t):
    return np.tanh(6 * (t - 0.5))
  for p in (16, 100):
    features, order = _planted_order(p, 32, seed=p, noise=0.05, embed=embed)
    assert probes.order_r2(features, order) > 0.7
  noise = probes.order_r2(np.random.default_rng(1).normal(size=(100, 32)), order)
  assert noise < 0.2


def test_matches_reference_with_pca_fit_per_fold():
  features, order = _planted_order(40, 12, seed=3, noise=2.0)
  k = probes._num_components(40, 12, probes.MAX_COMPONENTS)
  assert k == 12
  got = probes.order_r2(features, order)
  np.testing.assert_allclose(got, _reference_r2(features, order, k), rtol=1e-10)
  got_k3 = probes.order_r2(features, order, max_components=3)
  np.testing.assert_allclose(got_k3, _reference_r2(features, order, 3), rtol=1e-10)
  # A PCA fit on all rows, held-out ones included, gives another value: the test can tell.
  assert abs(got_k3 - _reference_r2(features, order, 3, leaky=True)) > 1e-6


def test_few_rows_many_columns_caps_components_at_half_the_rows():
  rng = np.random.default_rng(7)
  features, order = rng.normal(size=(8, 32)), rng.permutation(8).astype(np.float64)
  assert probes._num_components(8, 32, 50) == 4
  assert probes._num_components(8, 3, 50) == 3
  assert probes._num_components(8, 32, 0) == 1
  capped = probes.order_r2(features, order, max_components=4)
  assert math.isfinite(capped)
  for max_components in (5, 50, 1000):
    assert probes.order_r2(features, order, max_components=max_components) == capped
  assert probes.order_r2(features, order, max_components=2) != capped


def test_order_r2_is_reproducible_and_uses_min_folds_p():
  features, order = _planted_order(30, 8, seed=0, noise=1.0)
  assert probes.order_r2(features, order) == probes.order_r2(features.copy(), order.copy())
  assert [len(f) for f in probes._folds(6, 10)] == [1] * 6
  folds = probes._folds(23, 5)
  np.testing.assert_array_equal(np.sort(np.concatenate(folds)), np.arange(23))
  assert sorted(len(f) for f in folds) == [4, 4, 5, 5, 5]


def test_order_r2_degenerate_cases_are_nan():
  rng = np.random.default_rng(0)
  assert math.isnan(probes.order_r2(rng.normal(size=(20, 5)), np.full(20, 3.0)))
  for p in (1, 2, 3):
    assert math.isnan(probes.order_r2(rng.normal(size=(p, 5)), np.arange(p)))
  assert math.isfinite(probes.order_r2(rng.normal(size=(4, 5)), np.arange(4)))
  features, order = _planted_order(16, 8, seed=1)
  for bad in (np.nan, np.inf):
    broken = features.copy()
    broken[3, 2] = bad
    assert math.isnan(probes.order_r2(broken, order))
  with pytest.raises(ValueError, match="order"):
    probes.order_r2(features, order[:-1])
  with pytest.raises(ValueError, match="folds"):
    probes.order_r2(features, order, folds=1)


def _waves(p, ks, d, seed, noise=0.0):
  """Columns that are random mixtures of cos(2 pi k a / p + phase) over the planted ks."""
  rng = np.random.default_rng(seed)
  a = np.arange(p)[:, None]
  features = noise * rng.normal(size=(p, d))
  for k in ks:
    basis = np.column_stack([np.cos(2 * np.pi * k * a[:, 0] / p),
                             np.sin(2 * np.pi * k * a[:, 0] / p)])
    features += basis @ rng.normal(size=(2, d))
  return features


def _reference_spectrum(features):
  """Power of each real mode k = 1..p//2 from an explicit DFT sum over a, as shares."""
  p = features.shape[0]
  a = np.arange(p)
  dft = np.array([np.exp(-2j * np.pi * k * a / p) @ features for k in range(p)])
  power = np.sum(np.abs(dft) ** 2, axis=1)
  modes = [power[k] + power[p - k] if 2 * k != p else power[k] for k in range(1, p // 2 + 1)]
  return np.array(modes) / np.sum(modes)


@pytest.mark.parametrize("p", [7, 10, 31, 32])
def test_spectrum_matches_explicit_dft_and_parseval(p):
  features = np.random.default_rng(p).normal(size=(p, 5)) + 3.0
  shares = probes.fourier_spectrum(features)
  assert shares.shape == (p // 2,)
  np.testing.assert_allclose(shares, _reference_spectrum(features), rtol=1e-10, atol=1e-14)
  np.testing.assert_allclose(shares.sum(), 1.0, rtol=1e-12)
  # Parseval: shares are fractions of the centred sum of squares.
  centred = features - features.mean(axis=0)
  k = 3
  one_mode = np.fft.irfft(np.eye(p // 2 + 1)[k][:, None] * np.fft.rfft(centred, axis=0), p,
                          axis=0)
  np.testing.assert_allclose(shares[k - 1], np.sum(one_mode ** 2) / np.sum(centred ** 2),
                             rtol=1e-10)


@pytest.mark.parametrize("p,k", [(31, 5), (31, 15), (32, 5), (32, 16), (32, 1)])
def test_single_wave_puts_its_share_at_k(p, k):
  rng = np.random.default_rng(k)
  wave = np.cos(2 * np.pi * k * np.arange(p) / p)
  features = np.outer(wave, rng.normal(size=16)) + 4.0  # random column mixing, plus a constant
  shares = probes.fourier_spectrum(features)
  np.testing.assert_allclose(shares[k - 1], 1.0, rtol=1e-10)
  np.testing.assert_allclose(shares.sum(), 1.0, rtol=1e-12)
  assert probes.fourier_modes(features) == 1


@pytest.mark.parametrize("p", [31, 32, 59])
@pytest.mark.parametrize("ks", [(2, 9), (1, 4, 13)])
def test_modes_recover_the_planted_set(p, ks):
  features = _waves(p, ks, 24, seed=p, noise=0.05)
  shares = probes.fourier_spectrum(features)
  even = 1 / (p // 2)
  assert {int(k) + 1 for k in np.flatnonzero(shares > 2 * even)} == set(ks)
  assert probes.fourier_modes(features) == len(ks)
  assert probes.fourier_modes(features, factor=probes.DEFAULT_FACTOR) == len(ks)


@pytest.mark.parametrize("p", [31, 32])
def test_noise_has_no_modes(p):
  for seed in range(5):
    features = np.random.default_rng(seed).normal(size=(p, 64))
    shares = probes.fourier_spectrum(features)
    assert shares.max() < 2 / (p // 2)
    assert probes.fourier_modes(features) == 0
  # With a factor below 1 about half the frequencies pass: the count depends on the threshold.
  assert probes.fourier_modes(features, factor=0.5) > 0


def test_modes_add_up_over_layers():
  p, d = 31, 16
  per_layer = np.stack([_waves(p, (3,), d, seed=0, noise=0.02),
                        _waves(p, (2, 11), d, seed=1, noise=0.02)])
  assert [probes.fourier_modes(layer) for layer in per_layer] == [1, 2]
  assert probes.count_modes_over_layers(per_layer) == 3
  assert probes.count_modes_over_layers(per_layer[:1]) == 1
  with pytest.raises(ValueError, match="L, p, d"):
    probes.count_modes_over_layers(per_layer[0])


def test_degenerate_features_have_nan_spectrum_and_no_modes():
  features = _waves(31, (3,), 8, seed=0)
  for value in (0.0, 2.5, 0.1, -1e6 / 3):  # rounding must not read as modes
    for p in (31, 32):
      assert np.isnan(probes.fourier_spectrum(np.full((p, 8), value))).all()
      assert probes.fourier_modes(np.full((p, 8), value)) == 0
  # A constant offset in some columns leaves the other columns' wave intact.
  offset = np.column_stack([features, np.full((31, 4), 0.1)])
  np.testing.assert_allclose(probes.fourier_spectrum(offset), probes.fourier_spectrum(features),
                             atol=1e-12)
  for bad in (np.nan, np.inf):
    broken = features.copy()
    broken[4, 1] = bad
    shares = probes.fourier_spectrum(broken)
    assert shares.shape == (15,) and np.isnan(shares).all()
    assert probes.fourier_modes(broken) == 0
  per_layer = np.stack([features, features])
  per_layer[1, 0, 0] = np.nan
  assert probes.count_modes_over_layers(per_layer) == 1
