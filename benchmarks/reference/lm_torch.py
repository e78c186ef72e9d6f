"""The language-model track's decoder trained the way one would write it in eager PyTorch: the
yardstick of benchmarks.lm_vs_torch.

  python benchmarks/reference/lm_torch.py --d_model 32 --layers 2 --heads 4 --rows 64 \
      --batch 32 --vocab 512 --steps 10 --repeats 5 [--out PATH]

Needs only torch and numpy (no JAX, no rare_tasks), so it runs in any environment with torch;
benchmarks.lm_vs_torch runs it with the Python its `--torch_python` names. The defaults are
benchmarks.lm's CPU setting of `cpu_d32` (d_model 32, 4 heads, SwiGLU hidden 4 d) at 2 layers,
rows of 64 tokens, batch 32, vocabulary 512, float32; `--d_model 128` is `cpu_d128`.

The decoder is rare_tasks/lm/model.py's OLMo-2 block, written with plain torch.nn modules:
h = x + RMSNorm(Attn(x)), y = h + RMSNorm(MLP(h)); QK-norm as one RMSNorm over the whole q (and
k) projection before the head split; non-interleaved RoPE (theta 500,000); causal attention by
F.scaled_dot_product_attention; SwiGLU down(silu(gate(x)) * up(x)); no biases; RMSNorm eps 1e-6;
a final RMSNorm and an untied LM head (`--tie` ties it to the embedding). Weights are N(0, 0.02)
truncated at +-3 std, norm weights 1. The loss is OLMo's: F.cross_entropy plus 1e-5 times the
mean squared logsumexp of the logits (the z-loss). The optimizer is ours: global-norm clipping at
1.0, then torch.optim.AdamW (betas 0.9, 0.95, eps 1e-8, lr 1e-3, weight decay 0.05 on the weight
matrices and the LM head, not on the embedding or the norms), stepped by a LambdaLR schedule.

The data are random token batches: each step draws (batch, rows + 1) tokens uniformly with
torch.randint (inside the timed steps, as benchmarks.lm generates its batches on the device
inside its timed chunks) and trains on predicting tokens 1..rows from 0..rows-1. One eager step
at a time; torch uses its default thread count (one per core) unless `--threads` says.

Timing: `--warmup` steps first, then `--repeats` chunks of `--steps` steps; tokens/s is batch x
rows x steps over the median chunk.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROPE_THETA, NORM_EPS, INIT_STD, Z_LOSS = 500_000.0, 1e-6, 0.02, 1e-5
LEARNING_RATE, WEIGHT_DECAY, BETAS, EPS, GRAD_CLIP = 1e-3, 0.05, (0.9, 0.95), 1e-8, 1.0


def linear(d_in: int, d_out: int) -> torch.nn.Linear:
  """A bias-free dense layer with weights N(0, 0.02) truncated at +-3 std."""
  layer = torch.nn.Linear(d_in, d_out, bias=False)
  torch.nn.init.trunc_normal_(layer.weight, std=INIT_STD, a=-3 * INIT_STD, b=3 * INIT_STD)
  return layer


def rope_tables(rows: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
  """cos and sin (rows, head_dim / 2) of non-interleaved RoPE."""
  inv_freq = ROPE_THETA ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
  angles = torch.arange(rows, dtype=torch.float32)[:, None] * inv_freq[None, :]
  return torch.cos(angles), torch.sin(angles)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
  """x (B, H, T, D) rotated: halves (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)."""
  x1, x2 = x.chunk(2, dim=-1)
  return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(torch.nn.Module):
  def __init__(self, d_model: int, heads: int):
    super().__init__()
    self.heads = heads
    self.q, self.k, self.v, self.o = (linear(d_model, d_model) for _ in range(4))
    self.q_norm = torch.nn.RMSNorm(d_model, eps=NORM_EPS)
    self.k_norm = torch.nn.RMSNorm(d_model, eps=NORM_EPS)

  def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    b, t, d = x.shape
    q, k, v = self.q_norm(self.q(x)), self.k_norm(self.k(x)), self.v(x)
    heads = lambda a: a.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
    q, k, v = rope(heads(q), cos, sin), rope(heads(k), cos, sin), heads(v)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return self.o(out.transpose(1, 2).reshape(b, t, d))


class MLP(torch.nn.Module):
  def __init__(self, d_model: int, hidden: int):
    super().__init__()
    self.gate, self.up, self.down = linear(d_model, hidden), linear(d_model, hidden), linear(
        hidden, d_model)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(torch.nn.Module):
  """OLMo-2's reordered norm: h = x + RMSNorm(Attn(x)); y = h + RMSNorm(MLP(h))."""

  def __init__(self, d_model: int, heads: int, hidden: int):
    super().__init__()
    self.attention, self.mlp = Attention(d_model, heads), MLP(d_model, hidden)
    self.attention_norm = torch.nn.RMSNorm(d_model, eps=NORM_EPS)
    self.mlp_norm = torch.nn.RMSNorm(d_model, eps=NORM_EPS)

  def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    h = x + self.attention_norm(self.attention(x, cos, sin))
    return h + self.mlp_norm(self.mlp(h))


class Decoder(torch.nn.Module):
  """tokens (B, T) -> logits (B, T, vocab) float32."""

  def __init__(self, vocab: int, d_model: int, layers: int, heads: int, rows: int, tie: bool):
    super().__init__()
    self.embedding = torch.nn.Embedding(vocab, d_model)
    torch.nn.init.trunc_normal_(self.embedding.weight, std=INIT_STD, a=-3 * INIT_STD,
                                b=3 * INIT_STD)
    self.blocks = torch.nn.ModuleList(Block(d_model, heads, 4 * d_model) for _ in range(layers))
    self.final_norm = torch.nn.RMSNorm(d_model, eps=NORM_EPS)
    self.lm_head = None if tie else linear(d_model, vocab)
    cos, sin = rope_tables(rows, d_model // heads)
    self.register_buffer("cos", cos, persistent=False)
    self.register_buffer("sin", sin, persistent=False)

  def forward(self, tokens: torch.Tensor) -> torch.Tensor:
    x = self.embedding(tokens)
    t = tokens.shape[1]
    cos, sin = self.cos[:t], self.sin[:t]
    for block in self.blocks:
      x = block(x, cos, sin)
    x = self.final_norm(x)
    if self.lm_head is None:
      return x @ self.embedding.weight.T
    return self.lm_head(x)


def loss_of(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
  """Mean cross-entropy plus Z_LOSS times the mean squared logsumexp (OLMo's z-loss)."""
  flat = logits.reshape(-1, logits.shape[-1]).float()
  ce = F.cross_entropy(flat, targets.reshape(-1))
  return ce + Z_LOSS * flat.logsumexp(-1).pow(2).mean()


Schedule = torch.optim.lr_scheduler.LRScheduler


def optimizer_of(model: Decoder, steps: int, impl: str) -> tuple[torch.optim.Optimizer, Schedule]:
  """AdamW with weight decay on the weight matrices and the LM head only (not the embedding or
  the norms); a cosine schedule to 1% of the peak over `steps` (no warm-up, as benchmarks.lm's
  trainer)."""
  named = list(model.named_parameters())
  decayed = lambda n, p: p.ndim == 2 and n != "embedding.weight"  # noqa: E731
  groups = [{"params": [p for n, p in named if decayed(n, p)], "weight_decay": WEIGHT_DECAY},
            {"params": [p for n, p in named if not decayed(n, p)], "weight_decay": 0.0}]
  kind = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[impl]
  opt = torch.optim.AdamW(groups, lr=LEARNING_RATE, betas=BETAS, eps=EPS, **kind)
  schedule = torch.optim.lr_scheduler.LambdaLR(
      opt, lambda s: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
  return opt, schedule


def train_step(model: Decoder, opt: torch.optim.Optimizer, schedule: Schedule, batch: int,
               rows: int, vocab: int) -> torch.Tensor:
  """Draws a random batch and takes one clipped AdamW step; returns the loss."""
  tokens = torch.randint(vocab, (batch, rows + 1))
  loss = loss_of(model(tokens[:, :-1]), tokens[:, 1:])
  opt.zero_grad(set_to_none=True)
  loss.backward()
  torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
  opt.step()
  schedule.step()
  return loss.detach()


def _arguments(argv: list[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--d_model", type=int, default=32)
  p.add_argument("--layers", type=int, default=2)
  p.add_argument("--heads", type=int, default=4)
  p.add_argument("--rows", type=int, default=64, help="tokens per row (sequence length)")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--vocab", type=int, default=512)
  p.add_argument("--steps", type=int, default=10, help="steps per timed chunk")
  p.add_argument("--repeats", type=int, default=5, help="timed chunks")
  p.add_argument("--warmup", type=int, default=10, help="untimed steps first")
  p.add_argument("--tie", action="store_true", help="tie the LM head to the embedding")
  p.add_argument("--optimizer", choices=("default", "foreach", "fused"), default="default",
                 help="torch.optim.AdamW's implementation (default: torch's own choice)")
  p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", type=Path, default=None, help="JSON of the timings")
  return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
  args = _arguments(argv)
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)
  model = Decoder(args.vocab, args.d_model, args.layers, args.heads, args.rows, args.tie)
  opt, schedule = optimizer_of(model, 10**6, args.optimizer)
  step = lambda: train_step(model, opt, schedule, args.batch, args.rows, args.vocab)  # noqa: E731
  for _ in range(args.warmup):
    step()
  raw = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    for _ in range(args.steps):
      loss = step()
    raw.append(time.perf_counter() - start)
  median = statistics.median(raw)
  tokens = args.steps * args.batch * args.rows
  result = {"torch_version": torch.__version__, "threads": torch.get_num_threads(),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "params": sum(p.numel() for p in model.parameters()), "raw_s": raw,
            "median_s": median, "tokens_per_s": tokens / median,
            "final_loss": float(loss), "ln_vocab": float(np.log(args.vocab))}
  if args.out is not None:
    args.out.write_text(json.dumps(result, indent=2) + "\n")
  print(f"d_model {args.d_model}: {result['tokens_per_s']:,.0f} tokens/s (median of "
        f"{args.repeats} chunks of {args.steps} steps, {result['threads']} threads)")
  return result


if __name__ == "__main__":
  sys.exit(0 if main() else 1)
