"""One group of grid cells as a single compiled ensemble: init, a scanned train chunk, evaluation.

Arrays carry leading axes (S, P): S data streams, P members per stream. Within a stream every
member sees the same inputs each step (sampled once on the device), so the encoder of all members
is one (B, d) x (d, P * N) matmul; members differ in mixture, learning rate and, across streams,
seed and spectrum. The task family (rare_tasks.synthetic.tasks.task_family) supplies the data,
losses, per-task metrics and the measurements read off the weights. Nothing couples members: a
member's trajectory does not depend on which other members share its ensemble, its padding or the
device count.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rare_tasks import injection
from rare_tasks.analysis import allocation, interference
from rare_tasks.core import divergence, rng
from rare_tasks.core.optimizers import make_optimizer
from rare_tasks.synthetic.tasks.task_family import (
    TaskFamily,
    assign_tasks,
    balanced_tasks,
    sample_task_uniforms,
)

# Full float32 matmuls on every platform: results are compared with a closed form, and GPUs and
# TPUs otherwise multiply float32 at reduced precision by default. (No effect on CPU.)
MATMUL_PRECISION = "highest"

# Tags folded into a seed's key, so init, training data and evaluation data never share numbers.
_INIT, _DATA, _EVAL = 1, 2, 3


@dataclasses.dataclass(frozen=True)
class TrainSpec:
  """Static training settings shared by every member of an ensemble."""

  steps: int
  batch_size: int
  optimizer: str = "adam"
  schedule: str = "constant"
  warmup_steps: int = 0
  final_lr_fraction: float = 0.0
  momentum: float = 0.0
  eval_samples: int = 4096
  # The injection schedule (config.injection.schedule). "steady": every example's task drawn
  # i.i.d. from the mixture. "bursts": the rare tasks are withheld for `withhold_steps` updates,
  # then each member's batch holds exactly burst_size examples of every rare task every gap-th
  # update and none otherwise (rare_tasks.injection).
  injection: str = "steady"
  withhold_steps: int = 0
  # The generator every random number is drawn with (rare_tasks.core.rng.GENERATORS).
  rng: str = "philox4x32"


@dataclasses.dataclass(frozen=True)
class MeasureSpec:
  """Which mechanism measurements run, at every evaluation or (trace_rare) every step."""

  allocation: bool = False
  interference: bool = False
  interference_samples: int = 256  # examples per task
  trace_rare: bool = False  # linear encoders: the rare tasks' exact FVU and encoder every step


@dataclasses.dataclass(frozen=True)
class EnsembleSpec:
  """Everything static about one group: model shape, task family, training, measurements."""

  model: Any
  task: TaskFamily
  train: TrainSpec
  measure: MeasureSpec = MeasureSpec()


# Per-group arrays fixed during training: seeds (S,) int32, mixture (S, P, K), learning_rate
# (S, P), gap and burst_size (S, P) int32 (bursts injection), the task family's per-stream arrays
# under "stream" (leading axis S; linear mixture: spectrum (S, K, m)) and its shared arrays under
# "shared" (linear mixture: basis (d, d)).
Constants = dict


def make_constants(task: TaskFamily, seeds: np.ndarray, streams: dict[str, np.ndarray],
                   mixtures: np.ndarray, learning_rates: np.ndarray,
                   gaps: np.ndarray | None = None,
                   burst_sizes: np.ndarray | None = None) -> Constants:
  """Host constants; `streams` holds the family's per-stream arrays stacked over streams."""
  shape = np.shape(learning_rates)
  return dict(
      seeds=np.asarray(seeds, np.int32), mixture=np.asarray(mixtures, np.float32),
      learning_rate=np.asarray(learning_rates, np.float32),
      gap=np.ones(shape, np.int32) if gaps is None else np.asarray(gaps, np.int32),
      burst_size=(np.zeros(shape, np.int32) if burst_sizes is None
                  else np.asarray(burst_sizes, np.int32)),
      stream=dict(streams), shared=task.shared_constants())


def rare_mask(task: TaskFamily) -> np.ndarray:
  """(K,) bool: which tasks are rare."""
  return np.isin(np.arange(task.num_tasks), task.rare_tasks)


def _optimizer(spec: EnsembleSpec, learning_rate: jax.Array) -> optax.GradientTransformation:
  t = spec.train
  return make_optimizer(t.optimizer, learning_rate, t.schedule, t.steps, t.warmup_steps,
                        t.final_lr_fraction, t.momentum)


def _stream_key(spec: EnsembleSpec, seed: jax.Array, tag: int) -> jax.Array:
  return jax.random.fold_in(rng.key(seed, spec.train.rng), tag)


def init_state(spec: EnsembleSpec, consts: Constants, num_members: int) -> dict:
  """Initial state: params and optimiser state (S, P, ...), the step counter, and each member's
  diverged step (S, P) int32 (rare_tasks.core.divergence; NOT_DIVERGED while it trains).

  The initial parameters depend only on the seed and the shape, so members of a stream (cells
  that differ only in frequency or learning rate) start from the same weights.
  """
  def one_stream(seed):
    params = spec.model.init(_stream_key(spec, seed, _INIT), spec.task.input_dim)
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (num_members,) + a.shape), params)
  params = jax.vmap(one_stream)(consts["seeds"])
  # The optimiser state's structure does not depend on the learning rate.
  opt_state = jax.vmap(jax.vmap(_optimizer(spec, jnp.float32(1.0)).init))(params)
  diverged = jnp.full(consts["learning_rate"].shape[:1] + (num_members,),
                      divergence.NOT_DIVERGED, jnp.int32)
  return {"params": params, "opt_state": opt_state, "step": jnp.zeros((), jnp.int32),
          "diverged": diverged}


def _normalised(weights: jax.Array) -> jax.Array:
  return weights / jnp.maximum(weights.sum(), 1e-30)


def _batch_tasks(spec: EnsembleSpec, uniforms: jax.Array, mixture: jax.Array, gap: jax.Array,
                 burst_size: jax.Array, step: jax.Array) -> jax.Array:
  """Task of each example of one member's batch at update `step`, (B,) int32.

  Bursts: in a burst update the first R * burst_size examples are the R rare tasks'
  (burst_size each, in task order), the rest common tasks drawn from the renormalised mixture.
  """
  if spec.train.injection == "steady":
    return assign_tasks(uniforms, mixture)
  rare = jnp.asarray(rare_mask(spec.task))
  per_task = injection.examples_at(step, spec.train.withhold_steps, gap, burst_size)
  common_ids = assign_tasks(uniforms, _normalised(jnp.where(rare, 0.0, mixture)))
  rare_tasks = jnp.asarray(spec.task.rare_tasks, jnp.int32)
  index = jnp.arange(uniforms.shape[0])
  slot = jnp.minimum(index // jnp.maximum(per_task, 1), len(spec.task.rare_tasks) - 1)
  in_burst = index < per_task * len(spec.task.rare_tasks)
  return jnp.where(in_burst, rare_tasks[slot], common_ids)


def _drawn_apart(sample: Any, step: jax.Array) -> Any:
  """sample(), computed on its own and kept in memory for its consumers.

  Left to itself, XLA fuses an elementwise sampler (generator bits to normals) into every
  consumer, so each member's loss and gradient draws the batch again, in a slow transposed
  loop (on CPU, 40% of a narrow model's step). A conditional is a fusion boundary; `step >= 0`
  is always true but not known to the compiler, so the branch is kept and taken. A family's
  `sample` returns the bare draws and its `batch` transforms them outside the branch, for the
  same reason: inside it, the linear mixture's normals, scaled for the targets and for the
  rotation, were drawn once for each.
  """
  return jax.lax.cond(step >= 0, sample,
                      lambda: jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype),
                                           jax.eval_shape(sample)))


def _stream_step(spec: EnsembleSpec, params, opt_state, diverged, seed, stream, mixture,
                 learning_rate, gap, burst_size, shared, step):
  """One optimiser step for the P members of one stream: -> (params, opt_state, diverged,
  losses (P,), NaN for a diverged member); a member whose loss is no longer finite keeps its
  parameters (rare_tasks.core.divergence)."""
  key = jax.random.fold_in(_stream_key(spec, seed, _DATA), step)
  kx, ku = jax.random.split(key)
  task = spec.task
  # Drawn once per stream: members differ only in which task each example belongs to.
  data = _drawn_apart(partial(task.sample, kx, stream, shared, spec.train.batch_size), step)
  uniforms = sample_task_uniforms(ku, spec.train.batch_size)

  def member(p, o, dv, mix, lr, g, n):
    tasks = _batch_tasks(spec, uniforms, mix, g, n, step)
    x, targets = task.batch(data, tasks, stream, shared)

    loss, grads = jax.value_and_grad(task.training_loss, argnums=1)(
        spec.model, p, x, targets, tasks, stream, shared)
    updates, new_o = _optimizer(spec, lr).update(grads, o, p)
    (p, o), dv = divergence.guard((p, o), (optax.apply_updates(p, updates), new_o),
                                  jnp.isfinite(loss), dv, step + 1)
    return p, o, dv, jnp.where(dv == divergence.NOT_DIVERGED, loss, jnp.nan)

  return jax.vmap(member)(params, opt_state, diverged, mixture, learning_rate, gap, burst_size)


def train_step(spec: EnsembleSpec, state: dict, consts: Constants) -> tuple[dict, jax.Array]:
  """One step of every member: state -> (state, loss (S, P))."""
  params, opt_state, diverged, loss = jax.vmap(
      partial(_stream_step, spec), in_axes=(0, 0, 0, 0, 0, 0, 0, 0, 0, None, None))(
          state["params"], state["opt_state"], state["diverged"], consts["seeds"],
          consts["stream"], consts["mixture"], consts["learning_rate"], consts["gap"],
          consts["burst_size"], consts["shared"], state["step"])
  return {"params": params, "opt_state": opt_state, "step": state["step"] + 1,
          "diverged": diverged}, loss


def rare_trace(spec: EnsembleSpec, params: dict, consts: Constants) -> dict[str, jax.Array]:
  """The task family's rare trace of every member (`TaskFamily.rare_trace`), leaves (S, P, ...);
  the linear mixture's: exact rare FVU (S, P, R) and encoder_map (S, P, N, d), from which the
  host computes feature capture."""
  def member(p, stream):
    return spec.task.rare_trace(spec.model, p, stream, consts["shared"])

  return jax.vmap(jax.vmap(member, in_axes=(0, None)))(params, consts["stream"])


def train_chunk(spec: EnsembleSpec, state: dict, consts: Constants,
                num_steps: int) -> tuple[dict, jax.Array] | tuple[dict, jax.Array, dict]:
  """`num_steps` steps in one `lax.scan`: -> (state, mean training loss over the chunk (S, P)).

  With `measure.trace_rare`, also the rare trace after every step, each leaf (num_steps, S, P, ...).
  """
  trace = spec.measure.trace_rare

  def body(s, _):
    s, loss = train_step(spec, s, consts)
    traced = None
    if trace:
      traced = divergence.masked(rare_trace(spec, s["params"], consts), s["diverged"])
    return s, (loss, traced)

  with jax.default_matmul_precision(MATMUL_PRECISION):
    state, (losses, traces) = jax.lax.scan(body, state, None, length=num_steps)
  if trace:
    return state, losses.mean(0), traces
  return state, losses.mean(0)


def task_loss(spec: EnsembleSpec, params: dict, task: jax.Array, batch: tuple[jax.Array, Any],
              stream: dict | None = None, shared: dict | None = None) -> jax.Array:
  """Task `task`'s loss on a batch (inputs (n, d), targets) of its own examples."""
  x, targets = batch
  _, y = spec.model.apply(params, x)
  tasks = jnp.full((x.shape[0],), task, jnp.int32)
  return spec.task.loss(y, targets, tasks, stream or {}, shared or {})


def task_batches(spec: EnsembleSpec, key: jax.Array, stream: dict, shared: dict,
                 per_task: int) -> tuple[jax.Array, Any]:
  """A balanced batch as per-task batches: every leaf with leading axes (K, per_task)."""
  k = spec.task.num_tasks
  data = spec.task.sample(key, stream, shared, k * per_task)
  tasks = jnp.repeat(jnp.arange(k, dtype=jnp.int32), per_task)
  batch = spec.task.batch(data, tasks, stream, shared)
  return jax.tree.map(lambda a: a.reshape((k, per_task) + a.shape[1:]), batch)


def _interference(spec: EnsembleSpec, params, opt_state, mixture, learning_rate, batches,
                  stream, shared) -> dict[str, jax.Array]:
  loss = partial(task_loss, spec, stream=stream, shared=shared)
  grads = interference.per_task_gradients(loss, params, batches)
  shared_grads = {name: g for name, g in grads.items() if name not in spec.model.task_specific}
  rare = jnp.asarray(rare_mask(spec.task))
  out = interference.interference_measures(shared_grads, mixture, rare)
  out["rare_overwrite"] = interference.rare_overwrite(
      grads, mixture, rare, _optimizer(spec, learning_rate), opt_state, params)
  return out


def evaluate(spec: EnsembleSpec, state: dict, consts: Constants) -> dict[str, jax.Array]:
  """Measurements of every member at the state's step, each with leading axes (S, P).

  Per task (S, P, K): the family's metrics (`task.metric_names`, e.g. fvu) on `eval_samples`
  fresh held-out examples with balanced tasks, drawn from the stream's evaluation key at the step
  (never used in training), and what the family reads off the weights (`weight_metrics`; the
  linear mixture: population_fvu, exact for a linear encoder and NaN otherwise, and a linear
  encoder's encoder_map (S, P, N, d), from which the host computes feature capture). With
  `measure.allocation`: effective_neurons and dominant_neurons (S, P, K) of the family's
  allocation shares (rare_tasks.analysis.allocation). With `measure.interference`, on a
  balanced batch of `interference_samples` fresh examples per task: cosine (S, P, K, K),
  grad_norm (S, P, K), common_grad_norm, rare_grad_norm, common_rare_cosine, rare_overwrite
  (S, P) (rare_tasks.analysis.interference).
  """
  m = spec.measure
  task = spec.task
  tasks = jnp.asarray(balanced_tasks(spec.train.eval_samples, task.num_tasks))

  def one_stream(p_stream, o_stream, seed, stream, mixture, learning_rate, shared):
    key = jax.random.fold_in(_stream_key(spec, seed, _EVAL), state["step"])
    data = task.sample(key, stream, shared, spec.train.eval_samples)
    if m.interference:
      batches = task_batches(spec, jax.random.fold_in(key, 1), stream, shared,
                             m.interference_samples)

    def member(p, o, mix, lr):
      x, targets = task.batch(data, tasks, stream, shared)
      h, y = spec.model.apply(p, x)
      out = dict(task.task_metrics(y, targets, tasks, stream, shared))
      out.update(task.weight_metrics(spec.model, p, stream, shared))
      if m.allocation:
        shares = task.allocation_shares(spec.model, p, h, y, targets, tasks, stream, shared)
        out["effective_neurons"], out["dominant_neurons"] = allocation.task_neurons(shares)
      if m.interference:
        out.update(_interference(spec, p, o, mix, lr, batches, stream, shared))
      return out

    return jax.vmap(member)(p_stream, o_stream, mixture, learning_rate)

  with jax.default_matmul_precision(MATMUL_PRECISION):
    out = jax.vmap(one_stream, in_axes=(0, 0, 0, 0, 0, 0, None))(
        state["params"], state["opt_state"], consts["seeds"], consts["stream"],
        consts["mixture"], consts["learning_rate"], consts["shared"])
  return divergence.masked(out, state["diverged"])
