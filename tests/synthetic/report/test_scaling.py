"""Tests of rare_tasks/synthetic/report/scaling.py: fits of known power laws, the closed-form
curve, and the two entry points (a flag on the run, a command on its work directory) agreeing."""

import json

import jax
import numpy as np
import pytest

from rare_tasks.synthetic import grid_study, theory
from rare_tasks.synthetic.config import ConfigError, base_config, validate
from rare_tasks.synthetic.report import scaling
from rare_tasks.synthetic.tasks import LinearMixture


def _rows(widths, seeds, laws, freqs):
  rows = []
  for w in widths:
    for s in seeds:
      for k, ((l0, a, alpha), f) in enumerate(zip(laws, freqs)):
        rows.append({"width": w, "seed": s, "task": k, "task_frequency": f, "cell": 0,
                     "rare_frequency": 0.1, "fvu": l0 + a * w ** -alpha})
  return rows


def _config(**scaling):
  c = base_config()
  c.scaling.update(dict(enabled=True, bootstrap_resamples=50, **scaling))
  return c


def test_recovers_known_laws_and_classifies_tasks():
  laws = [(0.0, 0.5, 0.8), (0.2, 4.0, 0.8)]
  freqs = [0.7, 0.3]
  rows = _rows([4, 8, 16, 32, 64, 128], [0, 1], laws, freqs)
  task = LinearMixture(2, 2, num_rare=1)
  out = scaling.analyse(_config(small_width=8, large_width=128, epsilon=0.1), task, rows,
                               {0: {"rare_frequency": 0.1, "common_exponent": 1.0, "beta": 1.0}})
  (entry,) = out["settings"]
  fit = entry["total"]["fit"]
  # A pi-weighted sum of laws with one alpha is that law: L0 = 0.06, A = 1.55.
  np.testing.assert_allclose([fit["l0"], fit["a"], fit["alpha"]], [0.06, 1.55, 0.8], rtol=1e-3)
  for t, law in zip(entry["tasks"], laws):
    np.testing.assert_allclose([t["fit"]["l0"], t["fit"]["a"], t["fit"]["alpha"]], law,
                               rtol=1e-3, atol=1e-6)
  # Gaps from width 8 to 128: task 0 0.5 (8^-0.8 - 128^-0.8) = 0.09, task 1 0.72.
  assert [t["learnable_via"] for t in entry["tasks"]] == ["data scaling", "model scaling"]
  gap = entry["total"]["regions"]["model_scaling_gap"]
  np.testing.assert_allclose(gap, 1.55 * (8 ** -0.8 - 128 ** -0.8), rtol=1e-3)


def test_settings_come_from_the_cells_grid_values():
  # Per-task beta (the same in every cell) is one setting; two gaps are two settings, though
  # results rows carry neither.
  laws, freqs = [(0.0, 0.5, 0.8), (0.2, 4.0, 0.8)], [0.7, 0.3]
  rows = []
  for cell in range(2):
    for r in _rows([4, 8, 16, 32], [0], laws, freqs):
      rows.append({**r, "cell": cell * 100 + r["width"]})
  values = {r["cell"]: {"beta": (0.0, 3.0), "gap": 1 if r["cell"] < 100 else 4,
                        "rare_frequency": 0.1, "common_exponent": 1.0} for r in rows}
  out = scaling.analyse(_config(), LinearMixture(2, 2), rows, values)
  assert [e["setting"] for e in out["settings"]] == [{"gap": 1}, {"gap": 4}]
  for e in out["settings"]:
    np.testing.assert_allclose(e["total"]["fit"]["alpha"], 0.8, rtol=1e-3)


def test_closed_form_curve_is_the_weighted_optimal_fvu():
  task = LinearMixture(4, 3)
  values = {"rare_frequency": 0.05, "common_exponent": 1.0, "beta": 1.0}
  cf = scaling.closed_form(task, values, np.array([2.0, 8.0]))
  mixture = task.mixture(0.05, 1.0)
  for n, total in zip(cf["widths"], cf["total"]):
    expected = theory.predict(mixture, task.spectrum(1.0), n).fvu @ mixture
    np.testing.assert_allclose(total, expected, rtol=1e-12)
  assert cf["widths"][0] == 1 and cf["total"][-1] == pytest.approx(
      theory.predict(mixture, task.spectrum(1.0), 8).fvu @ mixture)


def _tiny_grid():
  c = base_config()
  c.task.num_tasks = 4
  c.task.block_size = 2
  c.train.steps = 100
  c.train.batch_size = 64
  c.eval_every = 100
  c.eval_samples = 256
  c.grid.width = (1, 2, 4)
  c.grid.seed = (0, 1)
  c.scaling.enabled = True
  c.scaling.bootstrap_resamples = 50
  return c


def test_flag_and_command_write_the_same_fits(tmp_path):
  grid_study.run(_tiny_grid(), tmp_path, devices=jax.devices()[:1])
  written = json.loads((tmp_path / "scaling_fit.json").read_text())
  assert "Scaling with width" in (tmp_path / "summary.md").read_text()
  assert (tmp_path / "figures" / "scaling.png").exists()
  (tmp_path / "scaling_fit.json").unlink()
  lines = scaling.write_for_workdir(tmp_path)
  assert json.loads((tmp_path / "scaling_fit.json").read_text()) == written
  assert any("alpha" in line for line in lines)
  entry = written["settings"][0]
  assert entry["widths"] == [1, 2, 4] and len(entry["tasks"]) == 4 and "closed_form" in entry
  # Overrides: another small width changes the regions, not the fits.
  scaling.write_for_workdir(tmp_path, {"small_width": 2})
  other = json.loads((tmp_path / "scaling_fit.json").read_text())["settings"][0]
  assert other["total"]["fit"] == entry["total"]["fit"]
  assert other["total"]["regions"]["small_width"] == 2


def test_report_settings_change_without_retraining_and_older_runs_read(tmp_path):
  grid_study.run(_tiny_grid(), tmp_path, devices=jax.devices()[:1])
  c = _tiny_grid()
  c.scaling.small_width = 2
  report = grid_study.run(c, tmp_path, devices=jax.devices()[:1])
  assert report.trained_steps == 0
  stored = json.loads((tmp_path / "config.json").read_text())
  assert stored["scaling"]["small_width"] == 2
  # A run made before the scaling and design fields existed.
  for key in ("scaling", "design", "study"):
    del stored[key]
  (tmp_path / "config.json").write_text(json.dumps(stored))
  scaling.write_for_workdir(tmp_path, {"large_width": 4})
  out = json.loads((tmp_path / "scaling_fit.json").read_text())
  assert (out["small_width"], out["large_width"]) == (1, 4)


def test_command_refuses_a_directory_without_a_finished_run(tmp_path):
  with pytest.raises(FileNotFoundError, match="no config.json"):
    scaling.write_for_workdir(tmp_path)


def test_config_needs_three_widths_for_a_scaling_fit():
  c = _tiny_grid()
  c.grid.width = (2, 4)
  with pytest.raises(ConfigError, match=r"config.grid.width = \(2, 4\).*at least 3 widths"):
    validate(c)
  c.grid.width = (1, 2, 4)
  c.scaling.small_width, c.scaling.large_width = 4, 2
  with pytest.raises(ConfigError, match=r"config.scaling.small_width = 4"):
    validate(c)
  # 0 is the grid's widest: a small width above it is refused before any training.
  c.scaling.small_width, c.scaling.large_width = 8, 0
  with pytest.raises(ConfigError, match=r"config.scaling.small_width = 8.*large width 4"):
    validate(c)
  c.scaling.small_width = 0
  c.study = "mixture_design"
  c.grid.frequency = None
  with pytest.raises(ConfigError, match=r"config.scaling.enabled.*'mixture_design'"):
    validate(c)
