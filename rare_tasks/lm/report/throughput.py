"""The pretraining summary's training section: the steps trained of the schedule's, the batch,
learning rate and mesh, and the median tokens per second and FLOP rate achieved."""

from __future__ import annotations

import numpy as np

from rare_tasks.core.report import Section, fmt
from rare_tasks.lm.report.pretraining_view import PretrainingRun

FILES: tuple[str, ...] = ()


def applies(run: PretrainingRun) -> bool:
  return True


def median_rate(run: PretrainingRun) -> float:
  """The median tokens/s per model over every record but each member's first (which includes
  compilation and warm-up); NaN when no member has a second record."""
  rates = [r["tokens_per_s"] for rows in run.members.values() for r in rows[1:]]
  return float(np.median(rates)) if rates else float("nan")


def section(run: PretrainingRun) -> Section:
  c, info = run.config, run.info
  n = len(run.members)
  rate = median_rate(run)
  flops = rate * n * info["flops_per_token"]
  lines = [
      "## Training", "",
      f"- {run.steps} of {c.train.steps} steps of {c.train.batch_size} rows "
      f"({info['tokens_per_step']:,} tokens per step per model), peak learning rate "
      f"{c.train.learning_rate:.3g}, warmup {c.train.warmup_steps}, mesh {info['mesh']}",
      f"- median {fmt(rate)} tokens/s ({fmt(rate * n)} model-tokens/s, "
      f"{fmt(flops / 1e9)} GFLOP/s achieved) on {info['platform']}", ""]
  return Section(lines, {"tokens_per_s": rate, "steps": run.steps})
