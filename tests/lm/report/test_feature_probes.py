"""Tests of rare_tasks/lm/report/feature_probes.py: probes.csv's rows per layer, the field that
says how present a task's feature is, Pearson's and Spearman's correlations, the pairs of the
injecting cells, and the section's table, CSV and figure."""

import math

import numpy as np
import pytest

from rare_tasks.core import tables
from rare_tasks.lm import grid
from rare_tasks.lm.report import feature_probes as fp
from tests.lm.report.conftest import injection_config, injection_records, injection_run

UNSEEN = "comparison_test_unseen_choice_accuracy"


def presence(cell: grid.Cell, step: int) -> float:
  """The planted order feature R^2: linear in step, seed and frequency, 0.2 higher at cpu_d64."""
  return 0.1 + step / 100 + 0.05 * cell.seed + 10 * cell.frequency + 0.2 * (
      cell.size == "cpu_d64")


def accuracy(cell: grid.Cell, step: int) -> float:
  """The planted unseen-pair choice accuracy: linear in step, seed and frequency."""
  return 0.2 + step / 100 + 0.1 * cell.seed + 5 * cell.frequency


def _records(c, cells):
  """Every cell's records at steps 10, 20 and 30 with the planted probes (layers 0..2: 0.05,
  the first block's R^2, and 0.9; Fourier modes 0, 3 and 4 by layer, 7 summed), but: no R^2 at
  cell 0's step 10, no unseen accuracy at cell 9's step 20, and no probes by layer at cell 2's
  step 30."""
  by_index = {cell.index: cell for cs in cells.values() for cell in cs}
  out = []
  for r in injection_records(c, cells):
    cell = by_index[r["cell"]]
    r2 = presence(cell, r["step"])
    r |= {"comparison_order_r2": r2, "comparison_order_r2_by_layer": [0.05, r2, 0.9],
          "comparison_fourier_modes": 7, "comparison_fourier_modes_by_layer": [0, 3, 4],
          UNSEEN: accuracy(cell, r["step"])}
    if (r["cell"], r["step"]) == (0, 10):
      r["comparison_order_r2"] = None
      r["comparison_order_r2_by_layer"] = [0.05, None, 0.9]
    if (r["cell"], r["step"]) == (9, 20):
      r[UNSEEN] = None
    if (r["cell"], r["step"]) == (2, 30):
      del r["comparison_order_r2_by_layer"], r["comparison_fourier_modes_by_layer"]
    out.append(r)
  return out


def _run(wd="."):
  """Two sizes x frequencies 0.01, 0.004, 0.001 x seeds 0 and 1 (and a control per seed)."""
  c = injection_config()
  c.grid.seed = (0, 1)
  c.mechanism.probes = True
  return injection_run(c, wd, _records(c, grid.cells(c)))


def test_it_applies_to_a_run_that_probed():
  assert fp.applies(_run())
  assert not fp.applies(injection_run())


def test_the_presence_key_is_the_fourier_modes_for_addition_else_the_order_feature():
  assert fp.presence_key("addition") == ("addition_fourier_modes",
                                         "Fourier modes (summed over blocks)")
  assert fp.presence_key("comparison") == ("comparison_order_r2",
                                           "order feature R^2 (first block)")


def test_rows_are_one_per_layer_with_the_planted_values():
  run = _run()
  rows = fp.rows(run)
  # 16 cells x 3 evaluations x 3 layers, less cell 2's last evaluation.
  assert len(rows) == 16 * 3 * 3 - 3
  assert not [r for r in rows if r["cell"] == 2 and r["step"] == 30]
  assert [(r["cell"], r["step"], r["layer"]) for r in rows[:6]] == [
      (0, 10, 0), (0, 10, 1), (0, 10, 2), (0, 20, 0), (0, 20, 1), (0, 20, 2)]
  assert math.isnan(rows[1]["order_r2"])
  cell = run.cells_by_index[11]
  assert (cell.size, cell.frequency, cell.seed) == ("cpu_d64", 0.004, 1)
  mine = [r for r in rows if r["cell"] == 11 and r["step"] == 20]
  assert mine[1] == {"size": "cpu_d64", "frequency": 0.004, "gap": 1, "seed": 1, "steps": 30,
                     "cell": 11, "step": 20, "task": "comparison", "layer": 1,
                     "order_r2": pytest.approx(0.1 + 0.2 + 0.05 + 0.04 + 0.2),
                     "fourier_modes": 3}
  assert [(r["order_r2"], r["fourier_modes"]) for r in mine[::2]] == [(0.05, 0), (0.9, 4)]


def test_pearson_matches_numpy_and_spearman_ranks_ties_by_their_mean():
  xy = np.random.default_rng(0).normal(size=(20, 2))
  r, rho, n = fp.correlations(xy)
  assert n == 20
  assert r == pytest.approx(np.corrcoef(xy[:, 0], xy[:, 1])[0, 1])
  # x ranks 0, 1.5, 1.5, 3 against y ranks 0, 1, 2, 3: rho = 4.5 / sqrt(4.5 x 5).
  ties = np.array([[1.0, 10.0], [2.0, 20.0], [2.0, 30.0], [3.0, 40.0]])
  assert fp.correlations(ties)[1] == pytest.approx(math.sqrt(0.9))
  # A monotone but curved relation: rho is 1, r is not.
  x = np.arange(1.0, 6.0)
  r, rho, _ = fp.correlations(np.stack([x, x ** 3], axis=1))
  assert rho == pytest.approx(1.0) and r < 0.99


def test_ranks_share_the_mean_rank_of_their_ties():
  np.testing.assert_allclose(fp._ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])),
                             [3.0, 0.0, 3.0, 1.0, 3.0])


@pytest.mark.parametrize("xy", [np.array([[1.0, 2.0], [2.0, 3.0]]),
                                np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 4.0]]),
                                np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]]),
                                np.zeros((0, 2))])
def test_too_few_pairs_or_a_constant_column_gives_nan(xy):
  r, rho, n = fp.correlations(xy)
  assert math.isnan(r) and math.isnan(rho) and n == len(xy)


def _average_ranks(v: np.ndarray) -> np.ndarray:
  """Ranks from 0, ties at the mean of the ranks they span: those below, plus half the others
  equal."""
  return np.array([(v < x).sum() + ((v == x).sum() - 1) / 2 for x in v])


def _expected_pairs(run, size=None):
  return sorted((presence(cell, s), accuracy(cell, s)) for cell in run.cells_by_index.values()
                if not cell.is_control and size in (None, cell.size) for s in (10, 20, 30)
                if (cell.index, s) not in ((0, 10), (9, 20)))


def test_pairs_come_from_the_cells_injecting_the_task_and_are_finite():
  run = _run()
  small = fp.pairs(run, "comparison", "cpu_d16")
  assert small.shape == (6 * 3 - 1, 2)
  np.testing.assert_allclose(sorted(map(tuple, small)), _expected_pairs(run, "cpu_d16"))
  large = fp.pairs(run, "comparison", "cpu_d64")
  np.testing.assert_allclose(sorted(map(tuple, large)), _expected_pairs(run, "cpu_d64"))
  assert fp.pairs(run, "comparison").shape == (2 * 6 * 3 - 2, 2)
  # No cell injects addition.
  assert fp.pairs(run, "addition").shape == (0, 2)


def test_the_section_writes_the_table_and_figure_and_the_last_evaluation(tmp_path):
  (tmp_path / "figures").mkdir()
  run = _run(tmp_path)
  section = fp.section(run, "comparison")
  assert section.files == ("probes.csv", "figures/probes_comparison.png")
  assert (tmp_path / "figures/probes_comparison.png").read_bytes()[:4] == b"\x89PNG"
  text = (tmp_path / "probes.csv").read_text().splitlines()
  assert text[0] == ",".join(fp.COLUMNS) and len(text) == 1 + 16 * 3 * 3 - 3
  written = tables.read_csv(tmp_path / "probes.csv")
  assert written[1]["order_r2"] == "nan" and written[2]["order_r2"] == "0.9"

  assert "| size | 0.01 | 0.004 | 0.001 | 0 |" in section.lines
  # At step 30, seed means: R^2 0.1 + 0.3 + 0.025 + 10 f (+ 0.2 at cpu_d64), accuracy
  # 0.2 + 0.3 + 0.05 + 5 f; the control at f = 0.
  assert "| cpu_d16 | 0.525 / 0.6 | 0.465 / 0.57 | 0.435 / 0.555 | 0.425 / 0.55 |" in (
      section.lines)
  assert "| cpu_d64 | 0.725 / 0.6 | 0.665 / 0.57 | 0.635 / 0.555 | 0.625 / 0.55 |" in (
      section.lines)

  numbers = section.numbers["comparison_probes"]
  assert set(numbers) == {"cpu_d16", "cpu_d64", "pooled"}
  for key, size in (("cpu_d16", "cpu_d16"), ("cpu_d64", "cpu_d64"), ("pooled", None)):
    xy = np.array(_expected_pairs(run, size))
    assert numbers[key]["n"] == len(xy)
    assert numbers[key]["pearson"] == pytest.approx(np.corrcoef(xy[:, 0], xy[:, 1])[0, 1])
    rho = np.corrcoef(_average_ranks(xy[:, 0]), _average_ranks(xy[:, 1]))[0, 1]
    assert numbers[key]["spearman"] == pytest.approx(rho)
  assert [numbers[k]["n"] for k in ("cpu_d16", "cpu_d64", "pooled")] == [17, 17, 34]
  assert section.lines[-1].startswith("Feature presence against unseen-pair choice accuracy")
  assert "(n = 34)." in section.lines[-1]
