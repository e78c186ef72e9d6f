"""End-to-end tests of rare_tasks/mechanism_report.py through the runner: tables, figures, npz,
summary, and their invariance to device count and interruption."""

import csv

import jax
import numpy as np
import pytest

from rare_tasks import grid_runner, mechanism_report, retention, traces, workdir
from rare_tasks.config_schema import base_config
from rare_tasks.grid import expand, group_cells


def mechanism_config():
  c = base_config()
  c.task.num_tasks = 4
  c.task.block_size = 2
  c.task.common_exponent = 1.0
  c.task.beta = (0.0, 1.0, 1.0, 3.0)
  c.grid.width = (2, 6)
  c.grid.rare_frequency = (1 / 16,)
  c.grid.gap = (1, 4)
  c.grid.seed = (0, 1)
  c.injection.mode = "bursts"
  c.injection.withhold_steps = 16
  c.train.steps = 48
  c.train.batch_size = 32
  c.train.learning_rate = 1e-2
  c.eval_every = 16
  c.eval_samples = 256
  c.checkpoint_interval_s = 0.0
  c.measure.allocation = True
  c.measure.interference = True
  c.measure.interference_samples = 16
  c.measure.trace_rare = True
  return c


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  wd = tmp_path_factory.mktemp("mechanism")
  report = grid_runner.run(mechanism_config(), wd)
  return wd, report


def _rows(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def test_tables_have_their_columns_and_a_row_per_measurement(reference):
  wd, _ = reference
  cells, tasks, evals = 8, 4, 4  # 2 widths x 2 gaps x 2 seeds; steps 0, 16, 32, 48
  alloc = _rows(wd / "allocation.csv")
  assert list(alloc[0]) == list(mechanism_report.ALLOCATION_COLUMNS)
  assert len(alloc) == cells * evals * tasks
  inter = _rows(wd / "interference.csv")
  assert list(inter[0]) == list(mechanism_report.INTERFERENCE_COLUMNS)
  assert len(inter) == cells * evals
  order = _rows(wd / "learning_order.csv")
  assert list(order[0]) == list(mechanism_report.LEARNING_ORDER_COLUMNS)
  assert len(order) == cells * tasks
  ret = _rows(wd / "retention.csv")
  assert list(ret[0]) == list(mechanism_report.RETENTION_COLUMNS)
  # Per cell and signal: one row per burst whose window lies inside the run.
  expected = {1: 32, 4: 8}
  for gap, n in expected.items():
    assert len(retention.burst_updates(48, 16, gap)) == n
    for signal in mechanism_report.SIGNALS:
      assert sum(r["gap"] == str(gap) and r["signal"] == signal for r in ret) == n * 4
  for name in ("allocation", "interference_matrices", "common_grad_norm", "overwrite",
               "retention_traces", "retained_fraction", "learning_order"):
    assert (wd / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
  summary = (wd / "summary.md").read_text()
  for section in ("## Neuron allocation", "## Gradient interference",
                  "## Injection and retention", "## Learning order"):
    assert section in summary


def test_allocation_shares_sum_to_the_width(reference):
  wd, _ = reference
  totals = {}
  for r in _rows(wd / "allocation.csv"):
    key = (r["cell"], r["step"])
    totals[key] = totals.get(key, 0.0) + float(r["effective_neurons"])
    width = int(r["width"])
    totals[key + ("width",)] = width
  for key, total in totals.items():
    if len(key) == 2:
      assert total == pytest.approx(totals[key + ("width",)], rel=1e-5)


def test_interference_npz_matches_the_table(reference):
  wd, _ = reference
  with np.load(wd / "interference.npz") as z:
    assert z["cosine"].shape == (8, 4, 4, 4) and z["grad_norm"].shape == (8, 4, 4)
    assert list(z["step"]) == [0, 16, 32, 48]
    trained = z["cosine"][:, 1:]
    finite = np.isfinite(trained)
    np.testing.assert_allclose(trained, np.swapaxes(trained, -1, -2), equal_nan=True)
    diag = np.diagonal(trained, axis1=-2, axis2=-1)
    np.testing.assert_allclose(diag[np.isfinite(diag)], 1.0, rtol=1e-5)
    assert finite.any()


def test_trace_covers_every_step_and_ends_at_the_final_measurement(reference):
  wd, _ = reference
  final = {r["cell"]: r for r in workdir.read_metrics(wd) if r["step"] == 48}
  groups = group_cells(expand(mechanism_config()))
  assert [g.name for g in groups] == ["width2_identity_depth0", "width6_identity_depth0"]
  for group in groups:
    trace = traces.read_group(wd, group.name)
    assert list(trace["steps"]) == list(range(49))
    assert trace["rare_fvu"].shape == (49, 2, 2, 1)
    # The last trace entry is the final exact rare FVU and capture of the same cell.
    for s, row in enumerate(group.cells):
      for p, cell in enumerate(row):
        np.testing.assert_allclose(trace["rare_fvu"][-1, s, p, 0],
                                   final[cell.index]["population_fvu"][3], rtol=1e-5)
        np.testing.assert_allclose(trace["rare_capture"][-1, s, p, 0],
                                   final[cell.index]["feature_capture"][3], rtol=1e-5,
                                   atol=1e-7)


def test_one_device_equals_eight_devices(reference, tmp_path):
  wd8, _ = reference
  grid_runner.run(mechanism_config(), tmp_path, devices=jax.devices()[:1])
  for name, columns in (("allocation.csv", ("effective_neurons",)),
                        ("interference.csv", ("common_grad_norm", "rare_grad_norm")),
                        ("retention.csv", ("before", "peak"))):
    a, b = _rows(tmp_path / name), _rows(wd8 / name)
    for column in columns:
      np.testing.assert_allclose([float(r[column]) for r in a], [float(r[column]) for r in b],
                                 rtol=1e-4, atol=1e-6)


class _Killed(Exception):
  pass


def test_resume_after_interruption_equals_uninterrupted(reference, tmp_path):
  wd_ref, _ = reference
  calls = []

  def kill(group, step):
    calls.append((group, step))
    if len(calls) == 5:  # inside the second group
      raise _Killed

  with pytest.raises(_Killed):
    grid_runner.run(mechanism_config(), tmp_path, chunk_hook=kill)
  grid_runner.run(mechanism_config(), tmp_path)
  for name in ("allocation.csv", "interference.csv", "retention.csv", "learning_order.csv"):
    assert (tmp_path / name).read_text() == (wd_ref / name).read_text(), name
