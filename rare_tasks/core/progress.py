"""Progress lines for long runs: program, step, models finished, rate and time left."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("rare_tasks")
if not log.handlers:
  _handler = logging.StreamHandler(sys.stderr)
  _handler.setFormatter(logging.Formatter("%(asctime)s rare_tasks: %(message)s", "%H:%M:%S"))
  log.addHandler(_handler)
  log.setLevel(logging.INFO)
  log.propagate = False


def _clock(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
  """Tracks work as model-steps weighted by a cost (a proxy for FLOPs: the synthetic track's
  width, the language models' FLOPs per token) and reports a rate and ETA.

  Args:
    group_costs: per program, (name, number of models, steps, cost of one model-step).
    min_interval_s: the least time between two progress lines of the same program.
  """

  def __init__(self, group_costs: list[tuple[str, int, int, float]], min_interval_s: float = 5.0):
    self._groups = {name: (cells, steps, cost) for name, cells, steps, cost in group_costs}
    self._total = sum(c * s * w for c, s, w in self._groups.values())
    self._done = 0.0
    self._cells_done = 0
    self._num_cells = sum(c for c, _, _ in self._groups.values())
    self._start = time.perf_counter()
    self._timed_work = 0.0
    self._min_interval = min_interval_s
    self._last = -float("inf")
    self._group_clock: dict[str, tuple[float, int]] = {}

  def skip(self, name: str, steps_done: int) -> None:
    """Counts work a resumed run does not redo (it does not enter the rate)."""
    cells, steps, cost = self._groups[name]
    self._done += cells * steps_done * cost
    if steps_done == steps:
      self._cells_done += cells

  def start(self, name: str) -> None:
    """Marks the start of a group's training (its first rate line includes compilation)."""
    self._group_clock[name] = (time.perf_counter(), 0)

  def advance(self, name: str, step: int, num_steps: int) -> None:
    """Records `num_steps` steps of every model of program `name`, now at `step`."""
    cells, steps, cost = self._groups[name]
    started, group_steps = self._group_clock.get(name, (time.perf_counter(), 0))
    self._group_clock[name] = (started, group_steps + num_steps)
    work = cells * num_steps * cost
    self._done += work
    self._timed_work += work
    if step == steps:
      self._cells_done += cells
    now = time.perf_counter()
    if step != steps and now - self._last < self._min_interval:
      return
    self._last = now
    elapsed = now - self._start
    rate = self._timed_work / elapsed if elapsed > 0 else 0.0
    eta = (self._total - self._done) / rate if rate > 0 else float("nan")
    model_steps = cells * (group_steps + num_steps) / max(now - started, 1e-9)
    log.info("%s step %d/%d | models %d/%d finished | %.0f model-steps/s in this program "
             "| elapsed %s | ETA %s", name, step, steps, self._cells_done, self._num_cells,
             model_steps, _clock(elapsed), _clock(eta) if eta == eta else "?")
