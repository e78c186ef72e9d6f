"""The smallest frequency each size learns a task at, and the order in which it learns them.

Per task, at the grid's first gap: each size's seed-mean final train accuracy per frequency and
its smallest learned one (accuracy >= learned.threshold), the frequencies only the largest size
learns, whether the smallest learned frequency never rises with size, and how far the learning
order (first learned step) follows the frequency order. The summary's headline is each task's
smallest learned frequencies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from rare_tasks.analysis.learning_order import pair_agreement
from rare_tasks.core import tables
from rare_tasks.core.report import Section, fmt, pct
from rare_tasks.lm.report.injection_view import InjectionRun, seed_mean

FILES: tuple[str, ...] = ()


def applies(run: InjectionRun) -> bool:
  return True


def science(c: ml_collections.ConfigDict, rows: list[dict[str, Any]], task: str,
            sizes: Sequence[str], params: dict[str, int]) -> dict[str, Any]:
  """The study's findings for one task at the first gap: per size the smallest learned
  frequency (seed-mean final train accuracy >= learned.threshold), the frequencies the largest
  size learns and the smallest does not, whether the smallest learned frequency never rises
  with size, and how far the learning order follows the frequency order.

  "accuracy" is the (sizes, frequencies) seed-mean accuracy, sizes by parameter count and
  frequencies ascending ("sizes", "frequencies").
  """
  gap = c.grid.gap[0]
  freqs = sorted(set(c.grid.frequency))
  order = sorted(sizes, key=lambda s: params[s])
  acc = seed_mean(rows, task, gap, "train_accuracy", order, freqs)
  learned = acc >= c.learned.threshold
  smallest = {s: (freqs[int(np.argmax(learned[i]))] if learned[i].any() else None)
              for i, s in enumerate(order)}
  only_large = [f for j, f in enumerate(freqs) if learned[-1, j] and not learned[0, j]]
  known = [smallest[s] if smallest[s] is not None else np.inf for s in order]
  monotone = all(b <= a for a, b in zip(known, known[1:]))
  agreement, pairs = order_agreement(c, rows, task, order)
  return {"smallest_learned": smallest, "only_largest": only_large, "monotone": monotone,
          "order_agreement": agreement, "order_pairs": pairs, "accuracy": acc,
          "frequencies": freqs, "sizes": order}


def order_agreement(c: ml_collections.ConfigDict, rows: list[dict[str, Any]], task: str,
                    sizes: Sequence[str]) -> tuple[float, int]:
  """(fraction, pairs): of the pairs of frequencies of one size (at the first gap) learned at
  different evaluations, or only one of them at all, the fraction whose higher frequency was
  learned first (seed-mean first learned step); NaN with no such pair."""
  gap = c.grid.gap[0]
  late = 10.0 * c.train.steps  # never learned: after every learned one
  agree, counted = [], 0
  steps = [dict(r, first=float(r["first_learned_step"]) if r["first_learned_step"] != ""
                else np.nan) for r in rows if r["task"] == task and r["gap"] == gap
           and r["frequency"] > 0]
  for s in sizes:
    first = tables.mean_by([r for r in steps if r["size"] == s], ("frequency",), "first")
    f = np.array(sorted(k[0] for k in first))
    measured = np.array([first[(x,)] for x in f])
    measured = np.where(np.isfinite(measured), measured, late)
    a, n = pair_agreement(measured, -f)
    if n:
      agree.append(a * n)
      counted += n
  return (sum(agree) / counted if counted else float("nan")), counted


def headline(found: dict[str, dict[str, Any]]) -> str:
  """Per task (task -> its findings), each size's smallest learned frequency."""
  return "; ".join(f"{task}: smallest learned frequency " + ", ".join(
      f"{s} {fmt(v) if v is not None else 'none'}" for s, v in f["smallest_learned"].items())
      for task, f in found.items())


def section(run: InjectionRun, task: str) -> Section:
  """The task's heading, its accuracy table and findings; numbers: {task: the findings}."""
  c = run.config
  found = science(c, run.rows, task, run.sizes, run.params)
  freqs, order = found["frequencies"], found["sizes"]
  lines = [f"## {task}", "", "Seed-mean train accuracy at the end (gap "
           f"{c.grid.gap[0]}; control = frequency 0):", "",
           "| size | " + " | ".join(f"{f:g}" for f in freqs) + " | smallest learned |",
           "|---|" + "---:|" * (len(freqs) + 1)]
  for i, s in enumerate(order):
    small = found["smallest_learned"][s]
    lines.append(f"| {s} | " + " | ".join(fmt(v) for v in found["accuracy"][i])
                 + f" | {'none' if small is None else f'{small:g}'} |")
  only = found["only_largest"]
  lines += ["",
            f"- learned by the largest size ({order[-1]}) and not by the smallest "
            f"({order[0]}): " + (", ".join(f"{f:g}" for f in only) if only else "none"),
            "- the smallest learned frequency never rises with size: "
            + ("yes" if found["monotone"] else "no"),
            "- learning order against frequency order: of the "
            f"{found['order_pairs']} pairs of frequencies of one size that were learned at "
            "different evaluations (or only one of them at all), "
            f"{pct(found['order_agreement'])} learned the higher frequency first"]
  numbers = {task: dict(found, accuracy=np.asarray(found["accuracy"]).tolist())}
  return Section(lines, numbers)
