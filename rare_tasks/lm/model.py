"""The OLMo-style decoder (docs/science.md, "The decoders") in Flax Linen, behind a pure
init/apply with plain-dict parameters, and its loss (cross-entropy plus z-loss).

Block "olmo2" (reordered norm, OLMo-2):  h = x + RMSNorm(Attn(x));  y = h + RMSNorm(MLP(h)),
  with QK-norm: one RMSNorm over the whole q projection (heads x head_dim) and one over k, before
  the split into heads.
Block "olmo1" (pre-norm, the OLMo-1.7 ladder):  h = x + Attn(RMSNorm(x));  y = h + MLP(RMSNorm(h)).
Both: RMSNorm(x) = x * rsqrt(mean(x^2) + 1e-6) * weight in float32; SwiGLU MLP
down(silu(gate(x)) * up(x)) without biases; non-interleaved RoPE with theta 500,000 in float32;
causal attention (jax.nn.dot_product_attention's; on a CPU `causal_attention`); a final RMSNorm
and an LM head (untied by default). Every weight matrix is drawn from N(0, 0.02) truncated at
+-3 std; norm weights start at 1. Parameters are float32; matmuls run in the compute dtype;
norms, softmax, logits and the loss in float32. Layers are one nn.scan (the first layer is
index 0 of the stacked arrays).

The dense layers (`matmul`), the attention on a CPU (`causal_attention`) and the loss
(`token_losses`) have their backward written out: the numbers autodiff of the plain equations
gives, to float32 rounding (tests/lm/test_model.py), in fewer and cheaper XLA:CPU operations.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rare_tasks.lm.ladder import Shape

BLOCKS = ("olmo2", "olmo1")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
ATTENTION = {"auto": None, "xla": "xla", "cudnn": "cudnn"}
# What jax.nn.dot_product_attention writes into masked scores (-0.7 x the float32 maximum).
MASKED = -0.7 * float(jnp.finfo(jnp.float32).max)
ROPE_THETA = 500_000.0
NORM_EPS = 1e-6
INIT_STD = 0.02
UNROLL_UP_TO = 4
Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Everything static about a decoder: shape, vocabulary, block and numerics."""

  shape: Shape
  vocab_size: int
  block: str = "olmo2"
  dtype: str = "float32"
  tie_embeddings: bool = False
  remat: bool = False
  attention: str = "auto"
  # OLMo-2's values; a checkpoint imported with others (rare_tasks.lm.hf) keeps its own.
  rope_theta: float = ROPE_THETA
  norm_eps: float = NORM_EPS


def weight_init() -> nn.initializers.Initializer:
  return nn.initializers.truncated_normal(stddev=INIT_STD, lower=-3.0, upper=3.0)


class RMSNorm(nn.Module):
  """x * rsqrt(mean(x^2) + eps) * weight over the last axis, in float32; returns x's dtype."""

  eps: float = NORM_EPS

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    weight = self.param("weight", nn.initializers.ones, (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
    return (y * weight).astype(x.dtype)


def rope(x: jax.Array, theta: float = ROPE_THETA) -> jax.Array:
  """Rotary position embedding of x (B, T, H, D), non-interleaved halves, in float32."""
  _, length, _, dim = x.shape
  inv_freq = theta ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
  angles = jnp.arange(length, dtype=jnp.float32)[:, None] * inv_freq[None, :]  # (T, D/2)
  cos, sin = jnp.cos(angles)[None, :, None, :], jnp.sin(angles)[None, :, None, :]
  x32 = x.astype(jnp.float32)
  x1, x2 = x32[..., : dim // 2], x32[..., dim // 2:]
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


class Attention(nn.Module):
  spec: ModelSpec

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s = self.spec.shape
    dense = _dense_factory(self.spec)
    flat = x.reshape(-1, s.d_model)  # 2-D matmuls: on CPU their backward needs no transposes
    q, k, v = (dense(s.d_model, name=n)(flat).reshape(x.shape) for n in ("q", "k", "v"))
    if self.spec.block == "olmo2":  # QK-norm over the whole projections, before the head split
      eps = self.spec.norm_eps
      q, k = RMSNorm(eps, name="q_norm")(q), RMSNorm(eps, name="k_norm")(k)
    heads = lambda a: a.reshape(*a.shape[:-1], s.num_heads, s.head_dim)  # noqa: E731
    theta = self.spec.rope_theta
    q, k, v = rope(heads(q), theta), rope(heads(k), theta), heads(v)
    out = attention(q, k, v, self.spec.attention)
    return dense(s.d_model, name="o")(out.reshape(-1, s.d_model)).reshape(x.shape)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, implementation: str) -> jax.Array:
  """Causal softmax attention of q, k, v (B, T, H, D) -> (B, T, H, D). "auto": on a CPU
  `causal_attention`, elsewhere jax.nn.dot_product_attention's own choice (cuDNN where it can);
  "xla" or "cudnn": jax.nn.dot_product_attention with that implementation."""
  if implementation != "auto":
    return library_attention(q, k, v, ATTENTION[implementation])
  return jax.lax.platform_dependent(q, k, v, cpu=causal_attention,
                                    default=lambda q, k, v: library_attention(q, k, v, None))


def row_max(x: jax.Array) -> jax.Array:
  """The max over the last axis of x, kept as an axis of 1 (see `_folded`)."""
  return _folded(x, jnp.maximum, jnp.max)


def row_sum(x: jax.Array) -> jax.Array:
  """The sum over the last axis of x, kept as an axis of 1 (see `_folded`)."""
  return _folded(x, jnp.add, jnp.sum)


def _folded(x: jax.Array, pairwise: Any, reduce: Any) -> jax.Array:
  """reduce(x) over the last axis after folding its halves together with `pairwise` while it is
  even and longer than 32. XLA:CPU turns a longer row reduction into an unfused reduce-window
  (its tree reduction: 0.4 ms of each softmax of `cpu_d32`), and fuses a row of 32 with the
  operations around it. A max is unchanged; a sum adds in another order."""
  while x.shape[-1] > 32 and x.shape[-1] % 2 == 0:
    half = x.shape[-1] // 2
    x = pairwise(x[..., :half], x[..., half:])
  return reduce(x, axis=-1, keepdims=True)


def library_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                      implementation: str | None = "xla") -> jax.Array:
  """jax.nn.dot_product_attention, causal: the reference `causal_attention` is tested against."""
  return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=implementation)


@jax.custom_vjp
def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
  """jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla") of q, k, v
  (B, T, H, D), computed the same way (scores q.k / sqrt(D) in float32, masked with the same
  large negative, softmax in float32, probabilities cast to v's dtype) but with its backward
  written out: dS = P * (dP - rowsum(dO * O)), the rowsum over D rather than over the T x T
  scores (equal to autodiff's rowsum(dP * P), as O = P V), and every product laid out so that
  XLA:CPU runs it as a plain batched matmul. With jax.nn's attention instead, a training step
  of `cpu_d32` (head_dim 8) took 1.05-1.1x as long (benchmarks.lm_vs_torch's setting)."""
  return _attention_forward(q, k, v)[0]


def _attention_forward(q, k, v):
  t, scale = q.shape[1], q.shape[-1] ** -0.5
  qh, kh, vh = (jnp.swapaxes(a, 1, 2) for a in (q, k, v))  # (B, H, T, D)
  scores = jnp.einsum("bhtd,bhsd->bhts", qh, kh, preferred_element_type=jnp.float32)
  scores = jnp.where(jnp.tril(jnp.ones((t, t), bool)), scores * scale, MASKED)
  e = jnp.exp(scores - row_max(scores))
  probs = e / row_sum(e)
  out = jnp.swapaxes(jnp.einsum("bhts,bhsd->bhtd", probs.astype(v.dtype), vh), 1, 2)
  return out, (q, k, v, probs, out)


def _attention_backward(residuals, g):
  q, k, v, probs, out = residuals
  scale = q.shape[-1] ** -0.5
  qh, kh, vh, gh, oh = (jnp.swapaxes(a, 1, 2) for a in (q, k, v, g, out))
  # dV and dK as (B, H, D, T) from q and g as (B, H, D, T): both operands of their products
  # then contract their last axis or the one before, which XLA:CPU hands to its fast matmul.
  qt, gt = (jnp.transpose(a, (0, 2, 3, 1)) for a in (q, g))
  dv = jnp.einsum("bhdt,bhts->bhds", gt, probs.astype(v.dtype))
  dp = jnp.einsum("bhtd,bhsd->bhts", gh, vh, preferred_element_type=jnp.float32)
  delta = jnp.einsum("bhtd,bhtd->bht", gh.astype(jnp.float32), oh.astype(jnp.float32))
  ds = (probs * (dp - delta[..., None]) * scale).astype(q.dtype)
  dq = jnp.einsum("bhts,bhsd->bhtd", ds, kh)
  dk = jnp.einsum("bhdt,bhts->bhds", qt, ds)
  return (jnp.swapaxes(dq, 1, 2), jnp.transpose(dk, (0, 3, 1, 2)),
          jnp.transpose(dv, (0, 3, 1, 2)))


causal_attention.defvjp(_attention_forward, _attention_backward)


class MLP(nn.Module):
  spec: ModelSpec

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dense = _dense_factory(self.spec)
    hidden = self.spec.shape.mlp_hidden
    flat = x.reshape(-1, x.shape[-1])
    gate, up = dense(hidden, name="gate")(flat), dense(hidden, name="up")(flat)
    return dense(self.spec.shape.d_model, name="down")(nn.silu(gate) * up).reshape(x.shape)


class Block(nn.Module):
  """One decoder block; scanned, so it takes (residual, None) and returns (residual, residual
  when `collect`, else None): the scan stacks what it collects."""

  spec: ModelSpec
  collect: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, _: Any) -> tuple[jax.Array, None]:
    attention, mlp = Attention(self.spec, name="attention"), MLP(self.spec, name="mlp")
    eps = self.spec.norm_eps
    attention_norm, mlp_norm = RMSNorm(eps, name="attention_norm"), RMSNorm(eps, name="mlp_norm")
    if self.spec.block == "olmo2":
      h = x + attention_norm(attention(x))
      y = h + mlp_norm(mlp(h))
    else:
      h = x + attention(attention_norm(x))
      y = h + mlp(mlp_norm(h))
    return y, (y if self.collect else None)


class Decoder(nn.Module):
  """tokens (B, T) int -> logits (B, T, vocab_size) float32; with `collect`, (logits, the
  residual stream (num_layers + 1, B, T, d_model): the embedding, then each block's output)."""

  spec: ModelSpec
  collect: bool = False

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array | tuple[jax.Array, jax.Array]:
    spec, dtype = self.spec, DTYPES[self.spec.dtype]
    embedding = self.param("embedding", weight_init(), (spec.vocab_size, spec.shape.d_model),
                           jnp.float32)
    x = jnp.take(embedding, tokens, axis=0).astype(dtype)
    embedded = x
    block = nn.remat(Block, prevent_cse=False) if spec.remat else Block
    layers = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                     length=spec.shape.num_layers, unroll=unroll_of(spec.shape.num_layers))
    x, stream = layers(spec, self.collect, name="layers")(x, None)
    x = RMSNorm(spec.norm_eps, name="final_norm")(x)
    flat = x.reshape(-1, spec.shape.d_model)
    if spec.tie_embeddings:
      logits = matmul(flat, embedding.T.astype(dtype))
    else:
      logits = _dense_factory(spec)(spec.vocab_size, name="lm_head")(flat)
    logits = logits.reshape(*tokens.shape, spec.vocab_size).astype(jnp.float32)
    if not self.collect:
      return logits
    return logits, jnp.concatenate([embedded[None], stream]).astype(jnp.float32)


def unroll_of(num_layers: int) -> int:
  """Layers per iteration of the scan: all of them up to UNROLL_UP_TO (on CPU the loop around
  one or two small layers cost 30% of the step, measured), else one (compile time stays flat
  in depth). Either way the parameters are stacked the same."""
  return num_layers if num_layers <= UNROLL_UP_TO else 1


def _dense_factory(spec: ModelSpec):
  def dense(features: int, name: str) -> Dense:
    return Dense(features, DTYPES[spec.dtype], name=name)
  return dense


class Dense(nn.Module):
  """flax.linen.Dense without bias (the same "kernel" parameter, drawn the same way) of a 2-D
  input (rows, in) -> (rows, features), through `matmul`."""

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", weight_init(), (x.shape[-1], self.features), jnp.float32)
    return matmul(x.astype(self.dtype), kernel.astype(self.dtype))


@jax.custom_vjp
def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """x (rows, in) @ w (in, out), with the gradient autodiff gives: (g w^T, x^T g). On a CPU x^T
  is first copied out, so that XLA:CPU runs the weight gradient as a plain matmul in its fast
  library rather than as a product contracting the operands' leading axis. With flax's Dense
  and autodiff instead, a training step of `cpu_d32` or `cpu_d128` took 1.05-1.15x as long
  (benchmarks.lm_vs_torch's setting)."""
  return x @ w


def _matmul_forward(x, w):
  return x @ w, (x, w)


def _matmul_backward(residuals, g):
  x, w = residuals
  return g @ w.T, jax.lax.platform_dependent(x, g, cpu=_weight_gradient_cpu,
                                             default=lambda x, g: x.T @ g)


def _weight_gradient_cpu(x: jax.Array, g: jax.Array) -> jax.Array:
  return jax.lax.optimization_barrier(x.T) @ g  # the barrier keeps XLA from folding x.T back


matmul.defvjp(_matmul_forward, _matmul_backward)


class Model:
  """A decoder of `spec` as pure functions: init(key) -> params, apply(params, tokens) -> logits.

  Params are a plain dict {"embedding", "layers", "final_norm", "lm_head"}; arrays under
  "layers" carry a leading axis of num_layers.
  """

  def __init__(self, spec: ModelSpec):
    self.spec = spec
    self._module = Decoder(spec)
    self._collecting = Decoder(spec, collect=True)

  def init(self, key: jax.Array) -> Params:
    tokens = jnp.zeros((1, 2), jnp.int32)
    return dict(self._module.init(key, tokens)["params"])

  def apply(self, params: Params, tokens: jax.Array) -> jax.Array:
    """tokens (B, T) int -> logits (B, T, V) float32."""
    return self._module.apply({"params": params}, tokens)

  def residuals(self, params: Params, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
    """tokens (B, T) int -> (logits (B, T, V), the residual stream (num_layers + 1, B, T,
    d_model) float32: index 0 the embedded tokens, index l the output of block l)."""
    return self._collecting.apply({"params": params}, tokens)


def token_losses(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-token cross-entropy and logsumexp of logits (B, T, V) at targets (B, T), float32.

  Its gradient is written out, d/dlogits = softmax * (g_ce + g_lse) - one_hot(target) * g_ce,
  one pass over the logits where autodiff of logsumexp and take_along_axis makes several (and a
  scatter)."""
  # targets + 0: a computed array, as jax's custom_vjp under vmap rejects a batched numpy one.
  return _token_losses(jnp.asarray(logits, jnp.float32), jnp.asarray(targets) + 0)


@jax.custom_vjp
def _token_losses(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
  top = row_max(logits)
  top = jnp.where(jnp.isfinite(top), top, 0.0)  # as jax.nn.logsumexp
  lse = (jnp.log(row_sum(jnp.exp(logits - top))) + top)[..., 0]
  picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  return lse - picked, lse


def _token_losses_forward(logits, targets):
  ce, lse = _token_losses(logits, targets)
  return (ce, lse), (logits, targets, lse)


def _token_losses_backward(residuals, g):
  logits, targets, lse = residuals
  g_ce, g_lse = g
  softmax = jnp.exp(logits - lse[..., None])
  hot = jax.lax.broadcasted_iota(targets.dtype, logits.shape, logits.ndim - 1) == targets[..., None]
  return softmax * (g_ce + g_lse)[..., None] - jnp.where(hot, g_ce[..., None], 0.0), None


_token_losses.defvjp(_token_losses_forward, _token_losses_backward)


def loss(logits: jax.Array, targets: jax.Array, z_loss: float,
         weights: jax.Array | None = None, normaliser: float | jax.Array | None = None
         ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Mean cross-entropy + z_loss * mean(logsumexp^2) over the tokens (weighted when `weights`
  (B, T) is given, with one normaliser: `normaliser` when given, else the weights' sum); returns
  (total, {"ce", "z_loss"}). Losses masked to disjoint parts of a batch with the batch's token
  count as their normaliser sum to the batch's loss."""
  ce, lse = token_losses(logits, targets)
  w = jnp.ones_like(ce) if weights is None else weights.astype(jnp.float32)
  norm = jnp.maximum(jnp.sum(w), 1.0) if normaliser is None else normaliser
  mean_ce = jnp.sum(ce * w) / norm
  mean_z = z_loss * jnp.sum(jnp.square(lse) * w) / norm
  return mean_ce + mean_z, {"ce": mean_ce, "z_loss": mean_z}
