"""The data-scaling control, for a grid of more than one run length (grid.steps): can more
steps teach the smallest size what the largest learns, or does it take size?

Per task, the smallest and the largest size by parameter count, the shortest and the longest
length (each its own warmup-cosine schedule). A frequency counts as learned at a size and length
when more than half its seeds learned it (the learned criterion; the seed counts are shown). The
verdict names the frequencies the smallest size learns only at the longer length (learnable via
data scaling at this scale) and those the largest learns at the shorter length while the
smallest does not even at the longer ("not learned at Rx", R the length ratio), with the
smallest size's task loss at both lengths and its slope over the last evaluations; it claims
nothing beyond R. Whether a size's threshold moved is read from its ranges at the two lengths,
by the one rule of `rare_tasks.analysis.thresholds`, under the criterion and the other score.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rare_tasks.analysis import thresholds
from rare_tasks.core.report import Section, fmt
from rare_tasks.lm.report import learned_frequency
from rare_tasks.lm.report.injection_view import InjectionRun
from rare_tasks.lm.task_metrics import CRITERIA

FILES: tuple[str, ...] = ()


def applies(run: InjectionRun) -> bool:
  return len(run.lengths) > 1


def seeds_learned(run: InjectionRun, task: str, size: str, steps: int
                  ) -> tuple[dict[float, int], int, bool]:
  """(per frequency the seeds that learned it, the seeds, whether every cell finished)."""
  freqs, scores, learned, _ = learned_frequency.learned_grid(run, task, size, steps,
                                                             run.config.learned.criterion)
  return ({f: int(learned[:, j].sum()) for j, f in enumerate(freqs)}, learned.shape[0],
          bool(np.isfinite(scores).all()))


def task_loss(run: InjectionRun, task: str, size: str, steps: int, frequency: float
              ) -> tuple[float, float, tuple[int, int]]:
  """(seed-mean train-instance loss at the end, its slope per 1,000 steps over the last
  learned.last_evals evaluations (at least 2), the steps that slope spans) of one size, length
  and frequency at the first gap."""
  means = run.history_means(task, size, steps, f"{task}_train_loss")
  if frequency not in means:
    return float("nan"), float("nan"), (0, 0)
  last = max(2, run.config.learned.last_evals)
  at, y = (a[-last:] for a in means[frequency])
  slope = float(np.polyfit(at.astype(float), y, 1)[0] * 1000) if len(at) > 1 else math.nan
  return float(y[-1]), slope, (int(at[0]), int(at[-1]))


def threshold_moves(run: InjectionRun, task: str, order: list[str], short: int, long: int,
                    metric: str) -> dict[str, dict[str, Any]]:
  """Per size its threshold under `metric` at both lengths, and whether it falls (the ranges
  separate, the longer's below)."""
  th = {n: learned_frequency.size_thresholds(run, task, n, metric) for n in (short, long)}
  out = {}
  for s in order:
    a, b = th[short][s], th[long][s]
    out[s] = {"short": learned_frequency.describe(a), "long": learned_frequency.describe(b),
              "falls": thresholds.separated(a, b) and b.high <= a.low}
  return out


def verdict(run: InjectionRun, task: str) -> dict[str, Any]:
  """The control's findings for one task (see the module docstring)."""
  order = sorted(run.sizes, key=lambda s: run.params[s])
  small, large = order[0], order[-1]
  short, long = min(run.lengths), max(run.lengths)
  counts = {(s, n): seeds_learned(run, task, s, n) for s in order for n in (short, long)}
  m = {k: {f: 2 * c > seeds for f, c in per.items()} for k, (per, seeds, _) in counts.items()}
  freqs = sorted(m[small, short])
  by_data = [f for f in freqs if not m[small, short][f] and m[small, long][f]]
  by_size = [f for f in freqs if m[large, short][f] and not m[small, long][f]]
  gap_short = [f for f in freqs if m[large, short][f] and not m[small, short][f]]
  losses = {f: {n: task_loss(run, task, small, n, f) for n in (short, long)} for f in by_size}
  moved = {m: threshold_moves(run, task, order, short, long, m) for m in CRITERIA}
  return {"smallest": small, "largest": large, "short": short, "long": long,
          "ratio": long / short, "counts": {f"{s}@{n}": per for (s, n), (per, _, _)
                                            in counts.items()},
          "seeds": len(run.config.grid.seed), "by_data": by_data, "by_size": by_size,
          "gap_short": gap_short, "losses": losses, "criterion": run.config.learned.criterion,
          "thresholds": moved,
          "unfinished": [k for k, (_, _, done) in
                         {f"{s} at {n}": v for (s, n), v in counts.items()}.items() if not done]}


def _freqs(fs: list[float]) -> str:
  return ", ".join(f"{f:g}" for f in fs)


def section(run: InjectionRun, task: str) -> Section:
  """The verdict, in numbers, whichever way they fall."""
  v = verdict(run, task)
  small, large, short, long = v["smallest"], v["largest"], v["short"], v["long"]
  r = f"{v['ratio']:g}x"
  lines = [f"### {task}: data scaling ({short} against {long} steps, {r})", "",
           f"Seeds (of {v['seeds']}) that learned each frequency (the learned criterion); a "
           "frequency counts as learned where more than half did:", ""]
  lines += [f"- {key.replace('@', ' at ')} steps: " + ", ".join(
      f"{f:g} {c}" for f, c in sorted(per.items())) for key, per in v["counts"].items()]
  lines.append("")
  if v["unfinished"]:
    lines.append("- unfinished cells (" + "; ".join(v["unfinished"]) + "): what follows is "
                 "provisional")
  if v["by_data"]:
    lines.append(f"- learnable via data scaling at this scale: {small} learns "
                 f"{_freqs(v['by_data'])} only with {r} the steps")
  else:
    lines.append(f"- {small} learns no frequency at {long} steps that it missed at {short}")
  for f in v["by_size"]:
    (l0, _, _), (l1, slope, span) = v["losses"][f][short], v["losses"][f][long]
    lines.append(f"- not learned at {r}: {large} learns {f:g} at {short} steps, {small} not "
                 f"even at {long}; its task loss {fmt(l0)} nats at {short} steps, {fmt(l1)} at "
                 f"{long}, changing by {fmt(slope)} nats per 1,000 steps over steps "
                 f"{span[0]}-{span[1]} (the end of the schedule, at its lowest learning rate); "
                 f"beyond {r} this control says nothing")
  if not v["by_size"]:
    if v["gap_short"]:
      lines.append(f"- every frequency {large} learns and {small} does not at {short} steps "
                   f"({_freqs(v['gap_short'])}) {small} learns at {long}: at this scale the gap "
                   f"between them closes within {r}")
    else:
      lines.append(f"- at {short} steps {large} learns no frequency that {small} does not: "
                   "there is no gap for more steps to close")
  for m in sorted(CRITERIA, key=lambda m: m != v["criterion"]):  # the criterion first
    moved = v["thresholds"][m]
    lines.append(f"- thresholds under {learned_frequency.NAMES[m]}, {short} -> {long} steps: "
                 + "; ".join(f"{s} {t['short']} -> {t['long']}"
                             + (" (falls; the ranges separate)" if t["falls"]
                                else " (the ranges overlap)") for s, t in moved.items())
                 + ("; every size's threshold falls with the steps"
                    if all(t["falls"] for t in moved.values()) else ""))
  lines.append("")
  numbers = {f"{task}_data_scaling": {k: val for k, val in v.items() if k != "losses"}}
  return Section(lines, numbers)
