"""Training an ensemble of decoders of one shape as one compiled program.

P members (one per init seed) share every step's text batch; nothing couples them: each has
its own gradient clipping (by its own global norm), AdamW state and schedule, so a member trains
exactly as the same model alone would. Parameters and optimizer state carry a leading member
axis and are sharded over the mesh (`rare_tasks.lm.sharding`); a chunk of steps is one
`lax.scan` in one dispatch, its batches passed in (generated on the device, or read from disk
by a text source).

A chunk may also take per-member injected rows: tokens that replace the first few tokens of
some rows for one member only (the injection study's instances), so that members sharing a
batch differ in exactly those tokens.

A member whose loss or gradient norm stops being finite is frozen at its last finite state and its
later losses are NaN (`rare_tasks.core.divergence`); the state's "diverged" (P,) holds the update
it diverged at.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from rare_tasks.core import divergence, optimizers
from rare_tasks.core import mesh as meshes
from rare_tasks.lm import model as lm_model
from rare_tasks.lm import sharding

State = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TrainSpec:
  """The optimisation: AdamW, linear warmup then cosine to final_lr_fraction of the peak."""

  steps: int
  learning_rate: float
  warmup_steps: int = 0
  final_lr_fraction: float = 0.01
  weight_decay: float = 0.05
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  grad_clip: float = 1.0
  z_loss: float = 1e-5


def schedule(spec: TrainSpec) -> optax.Schedule:
  """Learning rate at update `count` (0-based): 0 -> peak over warmup_steps, then a cosine down
  to final_lr_fraction * peak at the last step."""
  return optimizers.warmup_cosine(spec.learning_rate, spec.steps, spec.warmup_steps,
                                  spec.final_lr_fraction)


def decay_mask(params: lm_model.Params) -> Any:
  """True where weight decay applies: the weight matrices and the LM head, not the input
  embedding or any norm weight."""
  return jax.tree_util.tree_map_with_path(
      lambda kp, _: str(getattr(kp[-1], "key", "")) == "kernel", params)


def optimizer(spec: TrainSpec) -> optax.GradientTransformation:
  """Clipped AdamW on the spec's schedule, no decay on embeddings or norms."""
  return optimizers.clipped_adamw(schedule(spec), spec.b1, spec.b2, spec.eps, spec.weight_decay,
                                  spec.grad_clip, decay_mask)


class Trainer:
  """The compiled programs of one ensemble on one mesh: init, a chunk of steps, evaluation."""

  def __init__(self, model: lm_model.Model, spec: TrainSpec, num_members: int, mesh: Mesh):
    self.model, self.spec, self.mesh = model, spec, mesh
    self.num_members = num_members
    self.tx = optimizer(spec)
    abstract = jax.eval_shape(self._init_state, jax.ShapeDtypeStruct((num_members,), jnp.uint32))
    self.state_sharding = sharding.state_shardings(mesh, abstract)
    self.abstract_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract,
        self.state_sharding)
    rep = meshes.replicated(mesh)
    jit = functools.partial(jax.jit, compiler_options=compiler_options(mesh))
    self._init = jax.jit(self._init_state, out_shardings=self.state_sharding)
    self._start = jax.jit(self._state_from, out_shardings=self.state_sharding)
    self._chunk = jit(self._train_chunk, donate_argnums=0,
                      out_shardings=(self.state_sharding, rep))
    self._eval = jit(self._evaluate, static_argnums=2, out_shardings=rep)
    self._chunk_injected = jit(self._train_chunk_injected, donate_argnums=0,
                               out_shardings=(self.state_sharding, rep))
    self._labels = jit(self._label_metrics, static_argnums=5, out_shardings=rep)
    self._replicated = jax.jit(lambda a: a, out_shardings=rep)
    self._residuals = jax.jit(
        jax.vmap(lambda p, t: self.model.residuals(p, t)[1][:, :, -1], in_axes=(0, None)),
        out_shardings=rep)

  # -- pure functions -------------------------------------------------------------------------

  def _init_state(self, seeds: jax.Array) -> State:
    params = jax.vmap(lambda s: self.model.init(jax.random.key(s)))(seeds)
    return {"params": params, "opt": jax.vmap(self.tx.init)(params),
            "diverged": self._training(seeds.shape[0])}

  def _state_from(self, params: lm_model.Params) -> State:
    stacked = jax.tree.map(lambda a: jnp.broadcast_to(a, (self.num_members, *a.shape)), params)
    return {"params": stacked, "opt": jax.vmap(self.tx.init)(stacked),
            "diverged": self._training(self.num_members)}

  @staticmethod
  def _training(num_members: int) -> jax.Array:
    """Every member's diverged step while it trains (rare_tasks.core.divergence)."""
    return jnp.full((num_members,), divergence.NOT_DIVERGED, jnp.int32)

  def _member_loss(self, params, tokens):
    logits = self.model.apply(params, tokens[:, :-1])
    return lm_model.loss(logits, tokens[:, 1:], self.spec.z_loss)

  def _member_step(self, params, opt, diverged, step, tokens):
    """Update number `step` (1-based) of one member, kept only while its loss and gradient norm
    are finite (rare_tasks.core.divergence): -> (params, opt, diverged, parts), the parts NaN
    once the member has diverged."""
    (loss, parts), grads = jax.value_and_grad(self._member_loss, has_aux=True)(params, tokens)
    updates, new_opt = self.tx.update(grads, opt, params)
    parts["grad_norm"] = optax.tree.norm(grads)
    # NaN or infinite gradients as one scalar, the norm the clip computes too.
    ok = jnp.isfinite(loss) & jnp.isfinite(parts["grad_norm"])
    (params, opt), diverged = divergence.guard(
        (params, opt), (optax.apply_updates(params, updates), new_opt), ok, diverged, step)
    return params, opt, diverged, divergence.masked(parts, diverged)

  def _trace(self, params, trace: tuple[jax.Array, jax.Array] | None) -> jax.Array | None:
    """Every member's mean LABEL cross-entropy per task on the traced instances: trace =
    (prefixes (tasks, n, PREFIX), labels (tasks, n)) -> (P, tasks); None without a trace."""
    if trace is None:
      return None
    prefixes, labels = trace

    def member(p):
      logits = self.model.apply(p, prefixes.reshape(-1, prefixes.shape[-1]))[:, -1]
      ce, _ = lm_model.token_losses(logits, labels.reshape(-1))
      return ce.reshape(labels.shape).mean(axis=-1)

    return jax.vmap(member)(params)

  def _train_chunk(self, state: State, batches: jax.Array, first_step: jax.Array,
                   trace: tuple[jax.Array, jax.Array] | None = None
                   ) -> tuple[State, dict[str, jax.Array]]:
    """batches (k, B, T+1) of updates first_step + 1 .. first_step + k -> (state after k
    steps, {"ce", "z_loss", "grad_norm"}: (k, P), and with a trace "task_trace": (k, P, tasks),
    each member's task loss after each update); NaN for a member once it diverged."""
    step = jax.vmap(self._member_step, in_axes=(0, 0, 0, None, None))

    def body(carry, xs):
      tokens, n = xs
      params, opt, diverged, parts = step(carry["params"], carry["opt"], carry["diverged"], n,
                                          tokens)
      if trace is not None:
        parts["task_trace"] = divergence.masked(self._trace(params, trace), diverged)
      return {"params": params, "opt": opt, "diverged": diverged}, parts

    return jax.lax.scan(body, state, (batches, _update_numbers(first_step, batches.shape[0])))

  def _train_chunk_injected(self, state: State, batches: jax.Array, injected: jax.Array,
                            first_step: jax.Array,
                            trace: tuple[jax.Array, jax.Array] | None = None
                            ) -> tuple[State, dict[str, jax.Array]]:
    """Like _train_chunk, member m training on batches with injected[:, m] (k, P, B, H) in place
    of each row's first H tokens where they are >= 0."""
    def member(params, opt, diverged, n, tokens, injected_row):
      return self._member_step(params, opt, diverged, n, with_injected(tokens, injected_row))

    step = jax.vmap(member, in_axes=(0, 0, 0, None, None, 0))

    def body(carry, xs):
      tokens, rows, n = xs
      params, opt, diverged, parts = step(carry["params"], carry["opt"], carry["diverged"], n,
                                          tokens, rows)
      if trace is not None:
        parts["task_trace"] = divergence.masked(self._trace(params, trace), diverged)
      return {"params": params, "opt": opt, "diverged": diverged}, parts

    numbers = _update_numbers(first_step, batches.shape[0])
    return jax.lax.scan(body, state, (batches, injected, numbers))

  def _evaluate(self, params, rows: jax.Array, rows_per_batch: int) -> jax.Array:
    """Mean next-token cross-entropy of every member over `rows` (N, T+1) -> (P,)."""
    batches = rows.reshape(-1, rows_per_batch, rows.shape[-1])

    def member(p):
      per_batch = jax.lax.map(lambda t: self._member_loss(p, t)[1]["ce"], batches)
      return jnp.mean(per_batch)

    return jax.vmap(member)(params)

  def _label_metrics(self, params, prefixes: jax.Array, labels: jax.Array,
                     candidates: jax.Array, right: jax.Array,
                     rows_per_batch: int) -> dict[str, jax.Array]:
    """Every member's scores of the token after each prefix: prefixes (N, L), labels (N,), the
    answers each instance allows candidates (N, C) (negative: padding) and the index of the right
    one right (N,) -> {"ce": cross-entropy (nats), "hit": the argmax over the whole vocabulary is
    the label, "choice": the right candidate scores highest among the candidates (1/k when it
    ties with k - 1 others), "formatted": the argmax is one of the candidates}, each (P, N)."""
    n, length = prefixes.shape
    xs = (prefixes.reshape(-1, rows_per_batch, length), labels.reshape(-1, rows_per_batch),
          candidates.reshape(-1, rows_per_batch, candidates.shape[-1]),
          right.reshape(-1, rows_per_batch))

    def member(p):
      def one(batch):
        x, y, cand, r = batch
        logits = self.model.apply(p, x)[:, -1].astype(jnp.float32)
        ce = jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, y[:, None], 1)[:, 0]
        top = jnp.argmax(logits, axis=-1)
        scores = jnp.where(cand >= 0, jnp.take_along_axis(logits, jnp.maximum(cand, 0), 1),
                           -jnp.inf)
        # Ties at the top are broken at random in expectation, as the count baseline breaks
        # them: 1/k when the right answer is one of k tied candidates; NaN logits score 0.
        best = scores.max(axis=-1, keepdims=True)
        tied = (scores == best).sum(axis=-1)
        right_best = jnp.take_along_axis(scores, r[:, None], 1)[:, 0] == best[:, 0]
        return {"ce": ce, "hit": top == y,
                "choice": jnp.where(right_best, 1.0 / jnp.maximum(tied, 1), 0.0),
                "formatted": jnp.any((cand == top[:, None]) & (cand >= 0), axis=-1)}

      out = jax.lax.map(one, xs)
      return jax.tree.map(lambda a: a.reshape(n), out)

    return jax.vmap(member)(params)

  # -- compiled entry points ------------------------------------------------------------------

  def init(self, seeds: np.ndarray) -> State:
    return self._init(jnp.asarray(seeds, jnp.uint32))

  def start_from(self, params: lm_model.Params) -> State:
    """Every member starting from the same parameters (one model's tree, as `Model.init`
    makes it) with a fresh optimizer state."""
    like = jax.eval_shape(self.model.init, jax.random.key(0))
    got = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), params)
    if jax.tree.structure(got) != jax.tree.structure(like) or jax.tree.leaves(got) != [
        jax.ShapeDtypeStruct(a.shape, a.dtype) for a in jax.tree.leaves(like)]:
      raise ValueError("Trainer.start_from: parameters of another shape than the model's")
    return self._start(params)

  def chunk(self, state: State, batches: jax.Array, injected: jax.Array | None = None,
            trace: tuple[jax.Array, jax.Array] | None = None, first_step: int = 0
            ) -> tuple[State, dict[str, jax.Array]]:
    """Trains k steps on batches (k, B, T+1), shared by the members; member m's rows carry
    injected[:, m] (k, P, B, H) in place of their first H tokens when given (a negative token
    keeps the row's own). With a trace (prefixes (tasks, n, PREFIX), labels (tasks, n)), each
    member's task loss on those instances after every update is traced too. first_step: the
    updates already trained (a member that diverges records the update number it reached)."""
    first = jnp.asarray(first_step, jnp.int32)
    if injected is None:
      return self._chunk(state, batches, first, trace)
    return self._chunk_injected(state, batches, injected, first, trace)

  def residuals(self, state: State, tokens: jax.Array) -> jax.Array:
    """Every member's residual stream at the last position of tokens (N, L): (P, num_layers + 1,
    N, d_model) float32, index 0 the embedding and l the output of block l."""
    return self._residuals(state["params"], tokens)

  def evaluate(self, state: State, rows: jax.Array, rows_per_batch: int) -> jax.Array:
    """Every member's mean next-token cross-entropy over rows (N, T+1) -> (P,), NaN for a
    diverged member."""
    return divergence.masked(self._eval(state["params"], rows, rows_per_batch),
                             self.diverged(state))

  def label_metrics(self, state: State, prefixes: jax.Array, labels: jax.Array,
                    candidates: jax.Array, right: jax.Array,
                    rows_per_batch: int) -> dict[str, jax.Array]:
    """Per member the cross-entropy, argmax hit, choice hit and format of `labels` after
    `prefixes` (N, L), N a multiple of rows_per_batch, among `candidates` (N, C) with the right
    one at `right` (N,): {"ce", "choice": (P, N) float32, "hit", "formatted": (P, N) bool}."""
    return self._labels(state["params"], prefixes, labels, candidates, right, rows_per_batch)

  def diverged(self, state: State) -> jax.Array:
    """Each member's diverged step (P,), a copy on every device (every process can read it,
    and the next chunk may donate the state)."""
    return self._replicated(state["diverged"])

  def learning_rate(self, count: int) -> float:
    """The learning rate of update number `count` (0-based)."""
    return float(schedule(self.spec)(count))


# XLA:CPU hands dot products to YNNPACK, and by default row reductions too; YNNPACK's reductions
# over the model's short rows (RMSNorm over d_model: 0.35 ms each for 2,048 rows of 32) made a
# training step of `cpu_d32` take 1.15x as long, of `cpu_d128` 1.03-1.2x (benchmarks.lm_vs_torch's
# setting). The trainer's programs keep the dots there and leave reductions to XLA's own loops:
# the same sums, in another order.
CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def compiler_options(mesh: Mesh) -> dict[str, str] | None:
  """CPU_COMPILER_OPTIONS on a mesh of CPU devices whose XLA knows them, else None."""
  device = mesh.devices.flat[0]
  if device.platform != "cpu" or not _cpu_options_known(device):
    return None
  return CPU_COMPILER_OPTIONS


@functools.cache
def _cpu_options_known(device: jax.Device) -> bool:
  """Whether this jaxlib's XLA:CPU accepts CPU_COMPILER_OPTIONS (an experimental flag)."""
  x = jax.ShapeDtypeStruct((), jnp.float32, sharding=jax.sharding.SingleDeviceSharding(device))
  try:
    jax.jit(jnp.negative, compiler_options=CPU_COMPILER_OPTIONS).lower(x).compile()
  except Exception:  # noqa: BLE001  (an XLA without the option: compile as before)
    return False
  return True


def _update_numbers(first_step: jax.Array, num_steps: int) -> jax.Array:
  """The 1-based numbers of the updates after first_step: (num_steps,) int32."""
  return first_step + 1 + jnp.arange(num_steps, dtype=jnp.int32)


def with_injected(tokens: jax.Array, injected: jax.Array) -> jax.Array:
  """tokens (B, T+1) with its first H tokens replaced by the injected tokens (B, H) where they
  are >= 0."""
  h = injected.shape[-1]
  return tokens.at[:, :h].set(jnp.where(injected >= 0, injected, tokens[:, :h]))


def trained_params(state: State, member: int) -> lm_model.Params:
  """One member's parameters as host arrays (the model alone)."""
  return jax.tree.map(lambda a: np.asarray(a)[member], jax.device_get(state["params"]))

