"""Tests of rare_tasks/analysis/scaling_fit.py: recovery of known power laws, constraints, the
bootstrap,
NaN cells, and the scaling-region arithmetic."""

import numpy as np
import pytest

from rare_tasks.analysis import scaling_fit
from rare_tasks.analysis.scaling_fit import (
    DATA_SCALING,
    MODEL_SCALING,
    PowerLaw,
    bootstrap_power_law,
    classify_tasks,
    fit_power_law,
    scaling_regions,
)

WIDTHS = 2.0 ** np.arange(2, 10)  # 4 .. 512
TRUE = PowerLaw(0.1, 2.0, 0.7)


def _rss(law, widths, losses):
  return float(np.sum((law(widths) - losses) ** 2))


def test_power_law_call_and_dict():
  law = PowerLaw(0.5, 3.0, 1.0)
  np.testing.assert_allclose(law(np.array([1.0, 3.0])), [3.5, 1.5])
  assert law.as_dict() == {"l0": 0.5, "a": 3.0, "alpha": 1.0}


def test_noiseless_recovery():
  fit, rss = fit_power_law(WIDTHS, TRUE(WIDTHS))
  np.testing.assert_allclose([fit.l0, fit.a, fit.alpha], [0.1, 2.0, 0.7], rtol=1e-4)
  assert rss < 1e-12


def test_zero_floor_recovered():
  law = PowerLaw(0.0, 1.5, 1.3)
  fit, _ = fit_power_law(WIDTHS, law(WIDTHS))
  assert 0.0 <= fit.l0 < 1e-6
  np.testing.assert_allclose([fit.a, fit.alpha], [1.5, 1.3], rtol=1e-4)


def test_active_floor_constraint_is_optimal():
  # Unconstrained, this would want L0 < 0: the fit must sit on L0 = 0 and no feasible nudge of it
  # may lower the residual.
  losses = 3.0 * WIDTHS ** -0.5 - 0.05
  fit, rss = fit_power_law(WIDTHS, losses)
  assert fit.l0 == 0.0 and fit.a > 0
  assert 0 < scaling_fit.ALPHA_MIN <= fit.alpha <= scaling_fit.ALPHA_MAX
  np.testing.assert_allclose(rss, _rss(fit, WIDTHS, losses), rtol=1e-9)
  for dl0, da, dalpha in [(1e-3, 0, 0), (0, 1e-3, 0), (0, -1e-3, 0), (0, 0, 1e-3), (0, 0, -1e-3)]:
    nudged = PowerLaw(fit.l0 + dl0, fit.a + da, fit.alpha + dalpha)
    assert _rss(nudged, WIDTHS, losses) >= rss


def test_weights_discount_an_outlier():
  losses = TRUE(WIDTHS)
  losses[3] += 0.5
  weights = np.ones_like(losses)
  weights[3] = 1e-9
  weighted, _ = fit_power_law(WIDTHS, losses, weights)
  unweighted, _ = fit_power_law(WIDTHS, losses)
  np.testing.assert_allclose(weighted.alpha, TRUE.alpha, rtol=1e-3)
  assert abs(unweighted.alpha - TRUE.alpha) > 1e-2


@pytest.mark.filterwarnings("error")
def test_flat_data_gives_no_amplitude():
  fit, rss = fit_power_law(WIDTHS, np.full(WIDTHS.size, 0.3))
  assert abs(fit.a) < 1e-9
  np.testing.assert_allclose(fit.l0, 0.3)
  assert np.isfinite(fit.alpha) and fit.alpha > 0
  assert rss < 1e-20


def test_increasing_data_clamps_amplitude_to_zero():
  losses = 0.3 + 0.01 * np.arange(WIDTHS.size)
  fit, _ = fit_power_law(WIDTHS, losses)
  assert fit.a == 0.0
  np.testing.assert_allclose(fit.l0, losses.mean())


@pytest.mark.parametrize("widths", [[4.0, 8.0], [4.0, 4.0, 8.0, 8.0]])
def test_too_few_widths_raise(widths):
  with pytest.raises(ValueError, match="got 2"):
    fit_power_law(widths, np.ones(len(widths)))


def test_nan_losses_are_dropped():
  losses = TRUE(WIDTHS)
  losses[[1, 5]] = np.nan
  fit, _ = fit_power_law(WIDTHS, losses)
  kept = np.isfinite(losses)
  expected, _ = fit_power_law(WIDTHS[kept], losses[kept])
  np.testing.assert_allclose(list(fit.as_dict().values()), list(expected.as_dict().values()),
                             rtol=1e-10)
  np.testing.assert_allclose(fit.alpha, TRUE.alpha, rtol=1e-4)


def test_too_few_finite_losses_give_nan():
  losses = TRUE(WIDTHS)
  losses[2:] = np.nan
  fit, rss = fit_power_law(WIDTHS, losses)
  assert np.isnan([fit.l0, fit.a, fit.alpha, rss]).all()


def _noisy_losses(seed=0, num_seeds=8):
  rng = np.random.default_rng(seed)
  return TRUE(WIDTHS) * (1 + 0.02 * rng.standard_normal((num_seeds, WIDTHS.size)))


def test_bootstrap_noisy_recovery():
  result = bootstrap_power_law(WIDTHS, _noisy_losses(), num_resamples=1000, seed=0)
  lo, hi = result["interval"]["alpha"]
  assert lo <= TRUE.alpha <= hi
  assert lo < result["fit"]["alpha"] < hi
  np.testing.assert_allclose(result["fit"]["alpha"], TRUE.alpha, rtol=0.15)
  assert set(result["interval"]) == {"l0", "a", "alpha"}
  assert (result["level"], result["num_resamples"], result["num_seeds"]) == (0.9, 1000, 8)


def test_bootstrap_is_deterministic():
  losses = _noisy_losses()
  first = bootstrap_power_law(WIDTHS, losses, num_resamples=200, seed=3)
  assert first == bootstrap_power_law(WIDTHS, losses, num_resamples=200, seed=3)
  assert first["interval"] != bootstrap_power_law(WIDTHS, losses, num_resamples=200,
                                                  seed=4)["interval"]


def test_bootstrap_single_seed_interval_is_degenerate():
  result = bootstrap_power_law(WIDTHS, _noisy_losses(num_seeds=1), num_resamples=50)
  for name, value in result["fit"].items():
    assert result["interval"][name] == [value, value]


def test_bootstrap_with_diverged_cells():
  losses = _noisy_losses()
  losses[0, 2] = np.nan  # one diverged run
  losses[:, 6] = np.nan  # a width where every seed diverged
  result = bootstrap_power_law(WIDTHS, losses, num_resamples=200)
  assert np.isfinite(result["fit"]["alpha"])
  assert np.isfinite(np.array(list(result["interval"].values()))).all()
  np.testing.assert_allclose(result["fit"]["alpha"], TRUE.alpha, rtol=0.15)


def test_scaling_regions_hand_example():
  # L(4) = 0.1 + 2 / 2 = 1.1 and L(100) = 0.1 + 2 / 10 = 0.3: a gap of 0.8.
  law = PowerLaw(0.1, 2.0, 0.5)
  regions = scaling_regions(law, 4, 100, epsilon=0.5)
  np.testing.assert_allclose(
      [regions["loss_small"], regions["loss_large"], regions["model_scaling_gap"]],
      [1.1, 0.3, 0.8])
  assert regions["irreducible"] == 0.1
  assert (regions["small_width"], regions["large_width"]) == (4, 100)
  assert regions["requires_model_scaling"] is True
  assert scaling_regions(law, 4, 100, epsilon=1.0)["requires_model_scaling"] is False


def test_classify_tasks():
  labels = classify_tasks(np.array([0.5, 0.3, 0.2]), np.array([0.1, 0.25, 0.2]), epsilon=0.1)
  assert labels == [MODEL_SCALING, DATA_SCALING, DATA_SCALING]
  with pytest.raises(ValueError):
    classify_tasks(np.ones(3), np.ones(2), epsilon=0.1)
