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
      "width", "rare_frequency", "seed", "step", "common_grad_norm", "rare_grad_norm",
      "common_rare_cosine", "rare_overwrite", "gap", "cell"]
  assert len(rows) == 8 * 4
  for name in interference.FIGURES:
    assert (wd / name).read_bytes()[:4] == b"\x89PNG"
  assert "## Gradient interference" in (wd / "summary.md").read_text()


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
  assert_same_measurements("interference.csv", ("common_grad_norm", "rare_grad_norm"),
                           mechanism_run[0], mechanism_run_one_device, mechanism_run_resumed)
