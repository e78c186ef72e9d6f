"""Tests of rare_tasks/core/progress.py: the clock format and what a progress line reports."""

import logging

from rare_tasks.core import progress


def test_clock():
  assert progress._clock(5) == "0m05s"
  assert progress._clock(3725) == "1h02m05s"


def test_progress_line_counts_cells_and_skipped_work(caplog, monkeypatch):
  times = iter([0.0, 0.0, 10.0, 10.0, 20.0, 20.0])
  monkeypatch.setattr(progress.time, "perf_counter", lambda: next(times))
  p = progress.Progress([("a", 4, 100, 1.0), ("b", 2, 100, 3.0)], min_interval_s=0)
  progress.log.propagate = True
  try:
    with caplog.at_level(logging.INFO, logger="rare_tasks"):
      p.skip("a", 100)  # a resumed run: group a was finished before
      p.start("b")
      p.advance("b", 50, 50)
  finally:
    progress.log.propagate = False
  line = caplog.records[-1].getMessage()
  assert "b step 50/100" in line
  assert "models 4/6 finished" in line
  # 2 cells x 50 steps in 10 s; the rest of b (300 units) at 300 units per 10 s is 10 s.
  assert "10 model-steps/s" in line
  assert "ETA 0m10s" in line
