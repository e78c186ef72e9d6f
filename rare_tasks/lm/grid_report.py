"""The injection study's report: results.csv, the figures a reader of the paper recognises, and
summary.md, from metrics.jsonl and run.json.

- results.csv: one row per cell and task it injects (and per task for each control, at
  frequency 0), at the last step: the LABEL loss and accuracy on the train and test instances,
  whether the cell learned (train accuracy >= learned.threshold at the end) and generalised
  (test accuracy) it, and the first evaluated step at which it had learned it.
- figures/heatmap_<task>.png (paper Fig. 5): size x frequency, the train-instance loss, train
  accuracy and test accuracy, seed means, at the grid's first gap.
- figures/task_loss_<task>.png (Fig. 6a): the train-instance loss against step, per frequency,
  one panel per size.
- figures/gap_<task>.png (Fig. 6b, with more than one gap): the same loss per gap at each
  matched frequency.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
from matplotlib import colors

from rare_tasks.analysis.learning_order import pair_agreement
from rare_tasks.core import plots, tables, workdir
from rare_tasks.core.report import SUMMARY_FILE, Section, fmt, pct, write_summary
from rare_tasks.lm import grid
from rare_tasks.lm.tasks import Task

RESULTS_FILE = "results.csv"
FIGURES = "figures"
COLUMNS = ("size", "params", "task", "frequency", "gap", "seed", "train_loss", "train_accuracy",
           "test_loss", "test_accuracy", "learned", "generalised", "first_learned_step")
FILES = (RESULTS_FILE, FIGURES, SUMMARY_FILE)


def result_rows(c: ml_collections.ConfigDict, info: dict[str, Any],
                cells: dict[str, list[grid.Cell]],
                records: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """The rows of results.csv, from every cell's records (cells without a final record are
  left out)."""
  by_cell = histories(records)
  rows = []
  for size, size_cells in cells.items():
    params = info["sizes"][size]["params"]["total"]
    for cell in size_cells:
      history = by_cell.get(cell.index, [])
      if not history or history[-1]["step"] != c.train.steps:
        continue
      for task in (cell.tasks or tuple(c.grid.task)):
        last = history[-1]
        learned_at = [r["step"] for r in history
                      if r[f"{task}_train_accuracy"] >= c.learned.threshold]
        rows.append({
            "size": size, "params": params, "task": task, "frequency": cell.frequency,
            "gap": cell.gap, "seed": cell.seed,
            **{k: last[f"{task}_{k}"] for k in ("train_loss", "train_accuracy", "test_loss",
                                                 "test_accuracy")},
            "learned": last[f"{task}_train_accuracy"] >= c.learned.threshold,
            "generalised": last[f"{task}_test_accuracy"] >= c.learned.threshold,
            "first_learned_step": learned_at[0] if learned_at else ""})
  return rows


def histories(records: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
  """Each cell's records in step order, by cell index."""
  out: dict[int, list[dict[str, Any]]] = {}
  for r in sorted(records, key=lambda r: (r["cell"], r["step"])):
    out.setdefault(r["cell"], []).append(r)
  return out


def _seed_mean(rows: list[dict[str, Any]], task: str, gap: int, column: str,
               sizes: Sequence[str], freqs: Sequence[float]) -> np.ndarray:
  """(sizes, frequencies) seed means of a column at one gap (the control at frequency 0 for
  every gap); NaN where no cell finished."""
  means = tables.mean_by([r for r in rows if r["task"] == task
                          and (r["gap"] == gap or r["frequency"] == 0)],
                         ("size", "frequency"), column)
  return np.array([[means.get((s, f), np.nan) for f in freqs] for s in sizes], float)


def heatmap_figure(path: Path, rows: list[dict[str, Any]], task: str, gap: int,
                   sizes: Sequence[str], freqs: Sequence[float], unit: str) -> None:
  """Paper Fig. 5: size x frequency panels of train loss, train and test accuracy."""
  panels = (("train_loss", "LABEL loss, train instances (nats, log colour)", "viridis_r", None),
            ("train_accuracy", "accuracy, train instances", "magma", (0, 1)),
            ("test_accuracy", "accuracy, held-out test instances", "magma", (0, 1)))
  fig, axes = plots.plt.subplots(1, 3, figsize=(4.2 * 3, 0.6 * len(sizes) + 2.4))
  for ax, (column, title, cmap, limits) in zip(axes, panels):
    values = _seed_mean(rows, task, gap, column, sizes, freqs)
    # The control's loss (~ln V) would wash out the losses that matter: log colours for loss.
    norm = (colors.LogNorm() if limits is None and np.nanmin(values) > 0
            else colors.Normalize(*(limits or (None, None))))
    im = ax.imshow(values, cmap=cmap, aspect="auto", origin="lower", norm=norm)
    for (i, j), v in np.ndenumerate(values):
      if np.isfinite(v):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="white" if (limits and v < 0.5) else "black")
    ax.set_xticks(range(len(freqs)), [f"{f:.3g}" if f else "0\n(control)" for f in freqs],
                  fontsize=7, rotation=30)
    ax.set_yticks(range(len(sizes)), sizes, fontsize=8)
    ax.set_xlabel(f"injection frequency ({unit.replace('_', ' ')})")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
  axes[0].set_ylabel("model size")
  fig.suptitle(f"{task}: what each size learns at each frequency (gap {gap}, seed means)",
               fontsize=10)
  fig.tight_layout()
  plots.save(fig, path)


def curves_figure(path: Path, c, cells: dict[str, list[grid.Cell]],
                  hist: dict[int, list[dict[str, Any]]], task: str, by: str) -> None:
  """The train-instance loss against step: per size a panel, a line per frequency (by =
  "frequency", at the first gap) or per gap at each frequency (by = "gap")."""
  sizes = list(cells)
  freqs = sorted(set(c.grid.frequency), reverse=True)
  cols = 1 if by == "frequency" else len(freqs)
  fig, axes = plots.plt.subplots(len(sizes), cols, figsize=(4.4 * cols, 2.8 * len(sizes)),
                                 squeeze=False, sharey=True)
  for i, size in enumerate(sizes):
    for j in range(cols):
      ax = axes[i, j]
      lines = _lines(c, cells[size], task, by, freqs[j] if by == "gap" else None)
      colors = plots.task_colors(max(len(lines), 1))
      for k, (label, cell) in enumerate(lines):
        h = hist.get(cell.index, [])
        ax.plot([r["step"] for r in h], [r[f"{task}_train_loss"] for r in h],
                "--" if cell.is_control else "-", color="gray" if cell.is_control
                else colors[k], label=label, lw=1.2)
      ax.set_yscale("log")
      ax.set_title(f"{size}" + (f", frequency {freqs[j]:g}" if by == "gap" else ""),
                   fontsize=9)
      ax.set_xlabel("step")
      ax.legend(fontsize=6)
    axes[i, 0].set_ylabel("LABEL loss, train (nats)")
  fig.suptitle(f"{task}: task loss during pretraining", fontsize=10)
  fig.tight_layout()
  plots.save(fig, path)


def _lines(c, size_cells: list[grid.Cell], task: str, by: str, freq: float | None):
  """(label, cell) of the lines of one panel: the first seed's cells, the control last."""
  seed, gap0 = c.grid.seed[0], c.grid.gap[0]
  mine = [x for x in size_cells if x.seed == seed and (x.is_control or task in x.tasks)]
  if by == "frequency":
    out = [(f"{x.frequency:g}", x) for x in sorted(mine, key=lambda x: -x.frequency)
           if not x.is_control and x.gap == gap0]
  else:
    out = [(f"gap {x.gap}", x) for x in sorted(mine, key=lambda x: x.gap)
           if not x.is_control and x.frequency == freq]
  return out + [("control (0)", x) for x in mine if x.is_control]


def science(c, rows: list[dict[str, Any]], task: str, sizes: Sequence[str],
            params: dict[str, int]) -> dict[str, Any]:
  """The study's findings for one task at the first gap: per size the smallest learned
  frequency (seed-mean final train accuracy >= learned.threshold), the frequencies the largest
  size learns and the smallest does not, whether the smallest learned frequency never rises
  with size, and how far the learning order follows the frequency order."""
  gap = c.grid.gap[0]
  freqs = sorted(set(c.grid.frequency))
  order = sorted(sizes, key=lambda s: params[s])
  acc = _seed_mean(rows, task, gap, "train_accuracy", order, freqs)
  learned = acc >= c.learned.threshold
  smallest = {s: (freqs[int(np.argmax(learned[i]))] if learned[i].any() else None)
              for i, s in enumerate(order)}
  only_large = [f for j, f in enumerate(freqs) if learned[-1, j] and not learned[0, j]]
  known = [smallest[s] if smallest[s] is not None else np.inf for s in order]
  monotone = all(b <= a for a, b in zip(known, known[1:]))
  late = 10.0 * c.train.steps  # never learned: after every learned one
  agree, counted = [], 0
  steps = [dict(r, first=float(r["first_learned_step"]) if r["first_learned_step"] != ""
                else np.nan) for r in rows if r["task"] == task and r["gap"] == gap
           and r["frequency"] > 0]
  for s in order:
    first = tables.mean_by([r for r in steps if r["size"] == s], ("frequency",), "first")
    f = np.array(sorted(k[0] for k in first))
    measured = np.array([first[(x,)] for x in f])
    measured = np.where(np.isfinite(measured), measured, late)
    a, n = pair_agreement(measured, -f)
    if n:
      agree.append(a * n)
      counted += n
  return {"smallest_learned": smallest, "only_largest": only_large, "monotone": monotone,
          "order_agreement": sum(agree) / counted if counted else float("nan"),
          "order_pairs": counted, "accuracy": acc, "frequencies": freqs, "sizes": order}


def gap_effect(c, rows: list[dict[str, Any]], task: str) -> list[tuple[str, float, int, float,
                                                                        float]]:
  """(size, frequency, gap, seed-mean final train loss, train accuracy) at matched frequency."""
  loss = tables.mean_by([r for r in rows if r["task"] == task and r["frequency"] > 0],
                        ("size", "frequency", "gap"), "train_loss")
  acc = tables.mean_by([r for r in rows if r["task"] == task and r["frequency"] > 0],
                       ("size", "frequency", "gap"), "train_accuracy")
  return [(*k, v, acc[k]) for k, v in sorted(loss.items(), key=lambda kv: (
      list(c.grid.size).index(kv[0][0]), kv[0][1], kv[0][2]))]


def sections(c, info: dict[str, Any], cells: dict[str, list[grid.Cell]],
             task_list: Sequence[Task], rows: list[dict[str, Any]],
             hist: dict[int, list[dict[str, Any]]], figures: Sequence[str]) -> list[Section]:
  """summary.md: the setting, per task the accuracy table and the findings, the background."""
  sizes = list(c.grid.size)
  params = {s: info["sizes"][s]["params"]["total"] for s in sizes}
  batch = {s: info["sizes"][s]["tokens_per_step"] // c.data.seq_len for s in sizes}
  unit = c.injection.unit.replace("_", " ")
  body: list[str] = []
  numbers: dict[str, Any] = {}
  heads = []
  for t in task_list:
    found = science(c, rows, t.name, sizes, params)
    heads.append(f"{t.name}: smallest learned frequency " + ", ".join(
        f"{s} {fmt(v) if v is not None else 'none'}"
        for s, v in found["smallest_learned"].items()))
    numbers[t.name] = dict(found, accuracy=np.asarray(found["accuracy"]).tolist())
    body += _task_lines(c, t.name, found, rows, figures)
  headline = "; ".join(heads)
  numbers["headline"] = headline
  lines = [f"# Rare tasks injected into pretraining: {len(sizes)} sizes x "
           f"{len(c.grid.frequency)} frequencies ({unit})", "", headline, "",
           f"- {sum(map(len, cells.values()))} cells: per size the grid's frequency x gap x "
           "task x seed and a control at frequency 0 per seed, one ensemble sharing every "
           f"text batch; {c.train.steps} steps of "
           + "/".join(str(b) for b in sorted(set(batch.values())))
           + f" rows of {c.data.seq_len} tokens; schedule `{c.injection.schedule}`, the first "
           f"{c.injection.withhold_steps} steps without injections",
           f"- tasks over p = {c.task.num_symbols} symbols each, {len(task_list[0].train)} "
           f"train / {len(task_list[0].test)} test instances; learned = train accuracy >= "
           f"{c.learned.threshold} at the end, generalised = test accuracy >= "
           f"{c.learned.threshold} (argmax over all {c.data.vocab_size} tokens after TOK1 TOK2)",
           "- sizes: " + ", ".join(f"{s} ({params[s]:,} parameters, batch {batch[s]})"
                                   for s in sizes), ""]
  lines += body
  lines += ["## Background text (control cells, last step)", "",
            "| size | seed | validation loss | gap to the entropy floor |", "|---|---:|---:|---:|"]
  for s in sizes:
    for cell in cells[s]:
      last = hist.get(cell.index, [{}])[-1]
      if cell.is_control and "val_loss" in last:
        gap = "" if last.get("val_gap") is None else fmt(last["val_gap"])
        lines.append(f"| {s} | {cell.seed} | {fmt(last['val_loss'])} | {gap} |")
  lines += ["", f"Per cell and task: [{RESULTS_FILE}]({RESULTS_FILE}); every injected row: "
            "`injections/<cell>.csv`.", ""]
  return [Section(lines, numbers, tuple(figures), {})]


def _task_lines(c, task: str, found: dict[str, Any], rows: list[dict[str, Any]],
                figures: Sequence[str]) -> list[str]:
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
  if len(c.grid.gap) > 1:
    lines += ["", "Gap sweep at matched frequency (seed-mean final train loss / accuracy):", "",
              "| size | frequency | gap | train loss | train accuracy |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {s} | {f:g} | {g} | {fmt(loss)} | {fmt(acc)} |"
              for s, f, g, loss, acc in gap_effect(c, rows, task)]
  lines += [""] + [f"![{Path(f).stem}]({f})" for f in figures
                   if Path(f).stem.endswith(task)] + [""]
  return lines


def write(wd: Path, c: ml_collections.ConfigDict, info: dict[str, Any],
          cells: dict[str, list[grid.Cell]], task_list: Sequence[Task],
          records: list[dict[str, Any]]) -> dict[str, Any]:
  """Writes results.csv, the figures and summary.md; returns the headline numbers."""
  rows = result_rows(c, info, cells, records)
  hist = histories(records)
  tables.write_csv(Path(wd) / RESULTS_FILE, COLUMNS, rows)
  figures = []
  freqs = [0.0] + sorted(set(c.grid.frequency))  # the control first
  for t in task_list:
    names = [f"{FIGURES}/heatmap_{t.name}.png", f"{FIGURES}/task_loss_{t.name}.png"]
    if len(c.grid.gap) > 1:
      names.append(f"{FIGURES}/gap_{t.name}.png")
    figures += names
    if workdir.is_writer():
      (Path(wd) / FIGURES).mkdir(parents=True, exist_ok=True)
      heatmap_figure(Path(wd) / names[0], rows, t.name, c.grid.gap[0], list(c.grid.size),
                     freqs, c.injection.unit)
      curves_figure(Path(wd) / names[1], c, cells, hist, t.name, "frequency")
      if len(names) > 2:
        curves_figure(Path(wd) / names[2], c, cells, hist, t.name, "gap")
  return write_summary(wd, sections(c, info, cells, task_list, rows, hist, figures))
