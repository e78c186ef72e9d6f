"""The pretraining summary's opening: the title, the headline (each member's final validation
loss beside the source's entropy floor), the model and the text it trained on."""

from __future__ import annotations

from typing import Any

import numpy as np

from rare_tasks.core.report import Section, fmt
from rare_tasks.lm import ladder
from rare_tasks.lm.data import corpora
from rare_tasks.lm.report.pretraining_view import PretrainingRun

FILES: tuple[str, ...] = ()


def applies(run: PretrainingRun) -> bool:
  return True


def headline(run: PretrainingRun) -> str:
  """The preset, the members' mean final validation loss, the floor and the steps reached."""
  floor = run.info["loss_floor"]
  return (f"{run.config.model.preset} x{len(run.members)}: validation loss "
          f"{fmt(float(np.mean(run.final_val)))}"
          + (f" (entropy floor {fmt(floor)})" if floor is not None else "")
          + f" after {run.steps} steps")


def section(run: PretrainingRun) -> Section:
  c, info = run.config, run.info
  p, src, floor = info["params"], info["source"], info["loss_floor"]
  m = c.model
  head = headline(run)
  lines = [
      f"# Pretraining: {m.preset} ({m.block} block), {len(run.members)} member(s)", "",
      head, "",
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
      + (f"{fmt(floor)} nats" if floor is not None else "unknown"), ""]
  return Section(lines, {"headline": head, "loss_floor": floor})


def text_line(corpus: str, src: dict[str, Any]) -> str:
  """The summary's line on the text: the synthetic source's numbers, or a real corpus's files,
  tokens, tokenizer and cache."""
  if "fingerprint" not in src:
    return f"- corpus `{corpus}`: " + ", ".join(f"{k} {_num(v)}" for k, v in src.items())
  where = src.get("python") or src["root"]
  skipped = corpora.skipped_text(src["skipped_lines"], src.get("skipped_where", {}))
  return (f"- corpus `{corpus}` ({where}): {src['files']:,} files, {src['documents']:,} "
          f"documents" + (f" (skipped: {skipped})" if skipped else "")
          + f"; {src['train_tokens']:,} train tokens in {src['train_rows']:,} rows, "
          f"{src['validation_tokens']:,} validation tokens in {src['validation_rows']:,} rows\n"
          f"- tokenizer: {src['tokenizer']}, {src['tokenizer_size']:,} tokens (the model's "
          f"vocabulary {src['vocab_size']:,}), EOS id {src['eos_id']}; cache {src['cache']} "
          f"({src['cache_bytes'] / 1e6:.1f} MB, fingerprint {src['fingerprint']})")


def _num(v: Any) -> str:
  return fmt(v) if isinstance(v, float) else str(v)
