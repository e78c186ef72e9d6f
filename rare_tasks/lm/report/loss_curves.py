"""figures/loss.png and the table of each member's final train and validation loss: the loss
against tokens trained for every member of a pretraining run, with the source's entropy floor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rare_tasks.core import plots, workdir
from rare_tasks.core.report import Section, fmt
from rare_tasks.lm.report.pretraining_view import PretrainingRun

LOSS_FIGURE = "figures/loss.png"
FILES = (LOSS_FIGURE,)


def applies(run: PretrainingRun) -> bool:
  return True


def section(run: PretrainingRun) -> Section:
  """Draws the figure; returns the table of final losses and the figure's link."""
  c = run.config
  title = (f"{c.model.preset} ({c.model.block}) on {c.data.corpus} text, "
           f"{len(run.members)} member(s)")
  if workdir.is_writer():
    loss_figure(run.wd / LOSS_FIGURE, run.members, run.info["loss_floor"], title)
  lines = ["| member | init seed | train loss | validation loss | gap to floor |",
           "|---:|---:|---:|---:|---:|"]
  for k, r in sorted(run.finals.items()):
    gap = "" if r.get("val_gap") is None else fmt(r["val_gap"])
    train = "" if r["train_loss"] is None else fmt(r["train_loss"])
    lines.append(f"| {k} | {r['init_seed']} | {train} | {fmt(r['val_loss'])} | {gap} |")
  lines += ["", f"![loss]({LOSS_FIGURE})", ""]
  return Section(lines, {"final_val_loss": run.final_val.tolist()}, FILES,
                 {LOSS_FIGURE: "train and validation loss against tokens"})


def loss_figure(path: Path, members: dict[int, list[dict[str, Any]]], floor: float | None,
                title: str) -> None:
  """Train (dashed) and validation (solid) loss against tokens for every member, with the
  source's entropy floor."""
  fig, ax = plots.plt.subplots(figsize=(6.4, 4.2))
  colors = plots.task_colors(max(len(members), 1))
  for i, (m, rows) in enumerate(sorted(members.items())):
    tokens = np.array([r["tokens"] for r in rows], float)
    ax.plot(tokens, [r["val_loss"] for r in rows], "-o", ms=3, color=colors[i],
            label=f"member {m} (seed {rows[0]['init_seed']}) validation")
    # A train loss is the mean over the steps since the previous evaluation: drawn mid-way.
    starts = np.concatenate([[0.0], tokens[:-1]])
    train = [((a + b) / 2, r["train_loss"]) for a, b, r in zip(starts, tokens, rows)
             if r["train_loss"] is not None]
    if train:
      ax.plot(*zip(*train), "--", color=colors[i], alpha=0.8,
              label=f"member {m} train (mean of each interval)")
  if floor is not None:
    ax.axhline(floor, color="firebrick", lw=1, ls=":", label=f"entropy floor {floor:.3f}")
  ax.set_xscale("log")
  ax.xaxis.set_minor_formatter(plots.plt.NullFormatter())  # major ticks only: no overlap
  ax.set_xlabel("tokens trained (per model)")
  ax.set_ylabel("next-token loss (nats)")
  ax.set_title(title, fontsize=10)
  ax.legend(fontsize=7)
  plots.tight(fig)
  plots.save(fig, path)
