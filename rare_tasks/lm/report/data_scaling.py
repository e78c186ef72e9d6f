"""The data-scaling control, for a grid of more than one run length (grid.steps): can more
steps teach the smallest size what the largest learns, or does it take size?

Per task, the smallest and the largest size by parameter count, the shortest and the longest
length (each its own warmup-cosine schedule). A frequency is learned at a size and length when
more than half its seeds learned it (the learned criterion). The verdict names the frequencies
the smallest size learns only at the longer length (learnable via data scaling at this scale)
and those the largest learns at the shorter length while the smallest does not even at the
longer ("not learned at Rx", R the length ratio), with the smallest size's task loss at both
lengths and its slope over the last evaluations; it claims nothing beyond R.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rare_tasks.core import tables
from rare_tasks.core.report import Section, fmt
from rare_tasks.lm.report import learned_frequency
from rare_tasks.lm.report.injection_view import InjectionRun

FILES: tuple[str, ...] = ()


def applies(run: InjectionRun) -> bool:
  return len(run.lengths) > 1


def majority(run: InjectionRun, task: str, size: str, steps: int) -> dict[float, bool]:
  """Per frequency: learned at more than half of the seeds."""
  freqs, _, learned, _ = learned_frequency.learned_grid(run, task, size, steps,
                                                        run.config.learned.criterion)
  return {f: bool(learned[:, j].sum() * 2 > learned.shape[0]) for j, f in enumerate(freqs)}


def task_loss(run: InjectionRun, task: str, size: str, steps: int, frequency: float
              ) -> tuple[float, float]:
  """(seed-mean train-instance loss at the end, its slope per 1,000 steps over the last
  learned.last_evals evaluations) of one size, length and frequency at the first gap."""
  key, gap0 = f"{task}_train_loss", run.config.grid.gap[0]
  points = [{"step": r["step"], "value": tables.number(r.get(key))}
            for cell in run.cells[size] if cell.steps == steps and task in cell.tasks
            and cell.frequency == frequency and cell.gap == gap0
            for r in run.histories.get(cell.index, [])]
  means = tables.mean_by(points, ("step",), "value")
  at = sorted(k[0] for k in means)[-max(2, run.config.learned.last_evals):]
  if not at:
    return float("nan"), float("nan")
  y = np.array([means[(s,)] for s in at])
  slope = float(np.polyfit(np.array(at, float), y, 1)[0] * 1000) if len(at) > 1 else math.nan
  return float(y[-1]), slope


def verdict(run: InjectionRun, task: str) -> dict[str, Any]:
  """The control's findings for one task (see the module docstring)."""
  order = sorted(run.sizes, key=lambda s: run.params[s])
  small, large = order[0], order[-1]
  short, long = min(run.lengths), max(run.lengths)
  m = {(s, n): majority(run, task, s, n) for s in (small, large) for n in (short, long)}
  freqs = sorted(m[small, short])
  by_data = [f for f in freqs if not m[small, short][f] and m[small, long][f]]
  by_size = [f for f in freqs if m[large, short][f] and not m[small, long][f]]
  losses = {f: {n: task_loss(run, task, small, n, f) for n in (short, long)} for f in by_size}
  crit = run.config.learned.criterion
  moved = {}
  for s in order:
    th = {n: learned_frequency.size_thresholds(run, task, n, crit)[s] for n in (short, long)}
    moved[s] = (th[short].threshold, th[long].threshold)
  return {"smallest": small, "largest": large, "short": short, "long": long,
          "ratio": long / short, "learned": {f"{s}@{n}": [f for f in freqs if v[f]]
                                             for (s, n), v in m.items()},
          "by_data": by_data, "by_size": by_size, "losses": losses, "thresholds": moved,
          "all_move": all(b < a for a, b in moved.values())}


def _threshold(x: float) -> str:
  return "none" if math.isinf(x) else f"{x:g}"


def _freqs(fs: list[float]) -> str:
  return ", ".join(f"{f:g}" for f in fs)


def section(run: InjectionRun, task: str) -> Section:
  """The verdict, in numbers, whichever way they fall."""
  v = verdict(run, task)
  small, large, short, long = v["smallest"], v["largest"], v["short"], v["long"]
  r = f"{v['ratio']:g}x"
  lines = [f"### {task}: data scaling ({short} against {long} steps, {r})", "",
           "Frequencies learned (more than half the seeds, the learned criterion):", ""]
  lines += [f"- {key.replace('@', ' at ')} steps: {_freqs(fs) or 'none'}"
            for key, fs in v["learned"].items()]
  lines.append("")
  if v["by_data"]:
    lines.append(f"- learnable via data scaling at this scale: {small} learns "
                 f"{_freqs(v['by_data'])} only with {r} the steps")
  else:
    lines.append(f"- {small} learns no frequency at {long} steps that it missed at {short}")
  if v["by_size"]:
    for f in v["by_size"]:
      (l0, _), (l1, slope) = v["losses"][f][short], v["losses"][f][long]
      lines.append(f"- not learned at {r}: {large} learns {f:g} at {short} steps, {small} not "
                   f"even at {long}; its task loss {fmt(l0)} at {short} steps, {fmt(l1)} at "
                   f"{long} (slope {fmt(slope)} nats per 1,000 steps over the last "
                   f"evaluations); beyond {r} this control says nothing")
  else:
    lines.append(f"- no frequency that {large} learns at {short} steps stays unlearned by "
                 f"{small} at {long}: at this scale every gap between them closes within {r}")
  lines.append(f"- thresholds (median over seeds), {short} -> {long} steps: " + "; ".join(
      f"{s} {_threshold(a)} -> {_threshold(b)}" for s, (a, b) in v["thresholds"].items())
      + ("; every threshold moves with steps" if v["all_move"] else ""))
  lines.append("")
  numbers = {f"{task}_data_scaling": {k: val for k, val in v.items() if k != "losses"}}
  return Section(lines, numbers)
