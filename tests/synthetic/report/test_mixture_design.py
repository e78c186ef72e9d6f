"""Tests of rare_tasks/synthetic/report/mixture_design.py: rows per width from the search's
results, the inverse table, and the report's files."""

import math

import numpy as np

from rare_tasks.analysis import frequency_search
from rare_tasks.synthetic.report import mixture_design as design_report
from rare_tasks.synthetic.tasks import LinearMixture
from tests.synthetic.test_mixture_design import tiny_design

VALUES = {"width": 4, "beta": 1.0, "common_exponent": 1.5}


def test_rows_per_width_from_the_search():
  settings = frequency_search.SearchSettings(1e-3, 0.5, 4, 2.0, 0, 0)
  search = frequency_search.FrequencySearch([4, 2], 2, {2: 0.1, 4: 0.05}, settings)
  candidates = search.next_round()
  search.record({w: np.array([[False, True, True, True], [False, False, True, True]])
                 for w in candidates})
  rows = design_report.width_rows(search.results(), {2: 0.2, 4: float("nan")}, 2)
  assert [r["width"] for r in rows] == [2, 4] and list(rows[0]) == list(design_report.COLUMNS)
  f = candidates[2]
  assert rows[0]["min_frequency"] == np.exp(np.median(np.log([np.sqrt(f[0] * f[1]),
                                                               np.sqrt(f[1] * f[2])])))
  assert rows[0]["seeds_learned"] == 2 and rows[0]["predicted_min_frequency"] == 0.2
  assert math.isnan(rows[1]["predicted_min_frequency"])


def test_inverse_targets_around_a_single_threshold_are_distinct():
  c = tiny_design()
  c.design.target_frequencies = None
  rows = [{"width": 2, "min_frequency": np.nan, "min_frequency_low": np.nan,
           "min_frequency_high": np.nan},
          {"width": 4, "min_frequency": 0.1, "min_frequency_low": 0.1,
           "min_frequency_high": 0.1}]
  out = design_report.inverse(c, LinearMixture(6, 2), VALUES, rows)
  freqs = [r["frequency"] for r in out]
  assert len(set(freqs)) == len(freqs) == 6 and freqs[0] < 0.1 < freqs[-1]
  assert all(r["min_width"] == 4 for r in out if r["frequency"] >= 0.1)
