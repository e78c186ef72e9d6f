"""The pretraining report: figures/loss.png and summary.md, from metrics.jsonl and run.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from rare_tasks.core import plots, workdir
from rare_tasks.core.report import SUMMARY_FILE, Section, fmt, write_summary
from rare_tasks.lm import ladder

LOSS_FIGURE = "figures/loss.png"
FILES = (SUMMARY_FILE,)


def by_member(records: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
  """Records per member, in step order."""
  out: dict[int, list[dict[str, Any]]] = {}
  for r in sorted(records, key=lambda r: (r["member"], r["step"])):
    out.setdefault(r["member"], []).append(r)
  return out


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
  fig.tight_layout()
  plots.save(fig, path)


def sections(c: ml_collections.ConfigDict, info: dict[str, Any],
             members: dict[int, list[dict[str, Any]]]) -> list[Section]:
  p, src, floor = info["params"], info["source"], info["loss_floor"]
  m = c.model
  finals = {k: rows[-1] for k, rows in members.items()}
  final_val = np.array([r["val_loss"] for r in finals.values()])
  steps = max((r["step"] for r in finals.values()), default=0)
  rates = [r["tokens_per_s"] for rows in members.values() for r in rows[1:]]
  rate = float(np.median(rates)) if rates else float("nan")
  flops = rate * len(members) * info["flops_per_token"]
  headline = (f"{m.preset} x{len(members)}: validation loss {fmt(float(np.mean(final_val)))}"
              + (f" (entropy floor {fmt(floor)})" if floor is not None else "")
              + f" after {steps} steps")
  lines = [
      f"# Pretraining: {m.preset} ({m.block} block), {len(members)} member(s)", "",
      headline, "",
      "## Model", "",
      f"- d_model {m.d_model}, {m.num_layers} layers, {m.num_heads} heads, SwiGLU hidden "
      f"{m.mlp_hidden}, vocabulary {src.get('vocab_size', c.data.vocab_size):,}, {m.dtype} "
      "compute, "
      f"{'tied' if m.tie_embeddings else 'untied'} embeddings",
      f"- parameters: {p['total']:,} in all, {p['non_embedding']:,} outside the embedding and "
      f"LM head; the ladder's name counts {ladder.size_name(p['nominal'])} "
      f"({p['nominal_counts']})",
      f"- training FLOPs per token {info['flops_per_token']:.4g}; {info['memory']}", "",
      "## Text", "",
      text_line(c.data.corpus, src),
      f"- rows of {c.data.seq_len} predicted tokens; best achievable loss on such a row "
      + (f"{fmt(floor)} nats" if floor is not None else "unknown"), "",
      "## Training", "",
      f"- {steps} of {c.train.steps} steps of {c.train.batch_size} rows "
      f"({info['tokens_per_step']:,} tokens per step per model), peak learning rate "
      f"{c.train.learning_rate:.3g}, warmup {c.train.warmup_steps}, mesh {info['mesh']}",
      f"- median {fmt(rate)} tokens/s ({fmt(rate * len(members))} model-tokens/s, "
      f"{fmt(flops / 1e9)} GFLOP/s achieved) on {info['platform']}", "",
      "| member | init seed | train loss | validation loss | gap to floor |",
      "|---:|---:|---:|---:|---:|",
  ]
  for k, r in sorted(finals.items()):
    gap = "" if r.get("val_gap") is None else fmt(r["val_gap"])
    train = "" if r["train_loss"] is None else fmt(r["train_loss"])
    lines.append(f"| {k} | {r['init_seed']} | {train} | {fmt(r['val_loss'])} | {gap} |")
  lines += ["", f"![loss]({LOSS_FIGURE})", ""]
  numbers = {"headline": headline, "final_val_loss": final_val.tolist(), "loss_floor": floor,
             "tokens_per_s": rate, "steps": steps}
  return [Section(lines, numbers, (LOSS_FIGURE,),
                  {LOSS_FIGURE: "train and validation loss against tokens"})]


def write(wd: Path, c: ml_collections.ConfigDict, info: dict[str, Any],
          records: list[dict[str, Any]]) -> dict[str, Any]:
  """Draws the figure and writes summary.md; returns the headline numbers."""
  members = by_member(records)
  title = (f"{c.model.preset} ({c.model.block}) on {c.data.corpus} text, "
           f"{len(members)} member(s)")
  if workdir.is_writer():
    loss_figure(Path(wd) / LOSS_FIGURE, members, info["loss_floor"], title)
  return write_summary(wd, sections(c, info, members))


def text_line(corpus: str, src: dict[str, Any]) -> str:
  """The summary's line on the text: the synthetic source's numbers, or a real corpus's files,
  tokens, tokenizer and cache."""
  if "fingerprint" not in src:
    return f"- corpus `{corpus}`: " + ", ".join(f"{k} {_num(v)}" for k, v in src.items())
  where = src.get("python") or src["root"]
  skipped = ", ".join(f"{n:,} {why}" for why, n in sorted(src["skipped_lines"].items()))
  return (f"- corpus `{corpus}` ({where}): {src['files']:,} files, {src['documents']:,} "
          f"documents" + (f" (skipped: {skipped})" if skipped else "")
          + f"; {src['train_tokens']:,} train tokens in {src['train_rows']:,} rows, "
          f"{src['validation_tokens']:,} validation tokens in {src['validation_rows']:,} rows\n"
          f"- tokenizer: {src['tokenizer']}, {src['tokenizer_size']:,} tokens (the model's "
          f"vocabulary {src['vocab_size']:,}), EOS id {src['eos_id']}; cache {src['cache']} "
          f"({src['cache_bytes'] / 1e6:.1f} MB, fingerprint {src['fingerprint']})")


def _num(v: Any) -> str:
  return fmt(v) if isinstance(v, float) else str(v)
