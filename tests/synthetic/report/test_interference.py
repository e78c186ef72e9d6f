"""Tests of rare_tasks/synthetic/report/interference.py through a mechanism run: the table, the
npz of matrices that agrees with it, the figures and section, device count and resume."""

import numpy as np

from rare_tasks.core import tables
from rare_tasks.synthetic.report import interference
from tests.synthetic.report.conftest import assert_same_measurements


def test_a_row_per_cell_and_evaluation_and_its_figures(mechanism_run):
  wd, _ = mechanism_run
  rows = tables.read_csv(wd / "interference.csv")
  assert list(rows[0]) == list(interference.COLUMNS) == [
      "width", "rare_frequency", "seed", "step", "common_grad_norm", "common_grad_strength",
      "rare_grad_norm", "common_rare_cosine", "rare_overwrite", "gap", "cell"]
  assert len(rows) == 8 * 4
  for name in interference.FIGURES:
    assert (wd / name).read_bytes()[:4] == b"\x89PNG"
  summary = (wd / "summary.md").read_text()
  assert "## Gradient interference" in summary
  assert "| width | strength (f=0.0625) | uncaptured common utility | rare feature capture |" \
      in summary


def test_strength_is_each_cells_norm_over_its_running_peak(mechanism_run):
  wd, _ = mechanism_run
  rows = tables.read_csv(wd / "interference.csv")
  cells = sorted({r["cell"] for r in rows})
  for cell in cells:
    mine = sorted((r for r in rows if r["cell"] == cell), key=lambda r: int(r["step"]))
    norms = np.array([float(r["common_grad_norm"]) for r in mine])
    strength = np.array([float(r["common_grad_strength"]) for r in mine])
    # Zero heads at step 0: no gradient reaches the encoder, so there is no reference yet.
    assert norms[0] == 0 and np.isnan(strength[0])
    np.testing.assert_allclose(strength[1:], norms[1:] / np.maximum.accumulate(norms[1:]),
                               rtol=1e-6)
    assert strength[1] == 1.0


def test_falling_run_is_the_longest_strict_fall():
  assert interference.falling_run([4, 8, 16, 32, 64, 96],
                                  np.array([0.3, 0.2, 0.27, 0.13, 0.09, 0.07])) == (2, 5)
  assert interference.falling_run([4, 8, 16], np.array([0.1, 0.2, 0.3])) == (0, 0)
  # Equal neighbours break a run; the first of two equally long runs wins.
  assert interference.falling_run([1, 2, 3, 4, 5],
                                  np.array([0.5, 0.4, 0.4, 0.3, 0.2])) == (2, 4)
  assert interference.falling_run([1, 2, 3, 4], np.array([0.5, 0.4, 0.6, 0.5])) == (0, 1)


def test_interference_npz_matches_the_table(mechanism_run):
  wd, _ = mechanism_run
  rows = tables.read_csv(wd / "interference.csv")
  with np.load(wd / "interference.npz") as z:
    assert z["cosine"].shape == (8, 4, 4, 4) and z["grad_norm"].shape == (8, 4, 4)
    assert list(z["step"]) == [0, 16, 32, 48]
    assert list(z["cell"]) == sorted({int(r["cell"]) for r in rows})
    trained = z["cosine"][:, 1:]
    np.testing.assert_allclose(trained, np.swapaxes(trained, -1, -2), equal_nan=True)
    diag = np.diagonal(trained, axis1=-2, axis2=-1)
    np.testing.assert_allclose(diag[np.isfinite(diag)], 1.0, rtol=1e-5)
    assert np.isfinite(trained).any()


def test_one_device_equals_eight_and_resume_equals_uninterrupted(mechanism_run,
                                                                  mechanism_run_one_device,
                                                                  mechanism_run_resumed):
  assert_same_measurements("interference.csv",
                           ("common_grad_norm", "common_grad_strength", "rare_grad_norm"),
                           mechanism_run[0], mechanism_run_one_device, mechanism_run_resumed)
