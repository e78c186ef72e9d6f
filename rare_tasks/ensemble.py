"""One group of grid cells as a single compiled ensemble: init, a scanned train chunk, evaluation.

Arrays carry leading axes (S, P): S data streams, P members per stream. Within a stream every
member sees the same inputs each step (sampled once on the device), so the encoder of all members
is one (B, d) x (d, P * N) matmul; members differ in mixture, learning rate and, across streams,
seed and spectrum. Nothing couples members: a member's trajectory does not depend on which other
members share its ensemble, its padding or the device count.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rare_tasks import measurements
from rare_tasks.models.encoder_heads import EncoderHeads
from rare_tasks.optimizers import make_optimizer
from rare_tasks.tasks import linear_mixture
from rare_tasks.tasks.linear_mixture import LinearMixture

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


@dataclasses.dataclass(frozen=True)
class EnsembleSpec:
  """Everything static about one group: model shape, task geometry, training settings."""

  model: EncoderHeads
  task: LinearMixture
  train: TrainSpec


# Per-group arrays fixed during training: seeds (S,) int32, spectrum (S, K, m), mixture (S, P, K),
# learning_rate (S, P), basis (d, d).
Constants = dict


def make_constants(task: LinearMixture, seeds: np.ndarray, spectra: np.ndarray,
                   mixtures: np.ndarray, learning_rates: np.ndarray) -> Constants:
  return dict(
      seeds=np.asarray(seeds, np.int32), spectrum=np.asarray(spectra, np.float32),
      mixture=np.asarray(mixtures, np.float32),
      learning_rate=np.asarray(learning_rates, np.float32),
      basis=task.basis_matrix())


def _optimizer(spec: EnsembleSpec, learning_rate: jax.Array) -> optax.GradientTransformation:
  t = spec.train
  return make_optimizer(t.optimizer, learning_rate, t.schedule, t.steps, t.warmup_steps,
                        t.final_lr_fraction, t.momentum)


def _stream_key(seed: jax.Array, tag: int) -> jax.Array:
  return jax.random.fold_in(jax.random.key(seed), tag)


def init_state(spec: EnsembleSpec, consts: Constants, num_members: int) -> dict:
  """Initial state: params and optimiser state (S, P, ...), and the step counter.

  The initial parameters depend only on the seed and the shape, so members of a stream (cells
  that differ only in frequency or learning rate) start from the same weights.
  """
  def one_stream(seed):
    params = spec.model.init(_stream_key(seed, _INIT), spec.task.input_dim)
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (num_members,) + a.shape), params)
  params = jax.vmap(one_stream)(consts["seeds"])
  # The optimiser state's structure does not depend on the learning rate.
  opt_state = jax.vmap(jax.vmap(_optimizer(spec, jnp.float32(1.0)).init))(params)
  return {"params": params, "opt_state": opt_state, "step": jnp.zeros((), jnp.int32)}


def _stream_step(spec: EnsembleSpec, params, opt_state, seed, spectrum, mixture, learning_rate,
                 basis, step):
  """One optimiser step for the P members of one stream; returns their losses (P,)."""
  key = jax.random.fold_in(_stream_key(seed, _DATA), step)
  kx, ku = jax.random.split(key)
  sqrt_spectrum = jnp.sqrt(spectrum).reshape(-1)
  x, z = linear_mixture.sample_inputs(kx, basis, sqrt_spectrum, spec.train.batch_size)
  uniforms = linear_mixture.sample_task_uniforms(ku, spec.train.batch_size)
  num_tasks = spec.task.num_tasks

  def member(p, o, mix, lr):
    tasks = linear_mixture.assign_tasks(uniforms, mix)

    def loss_fn(p):
      _, y = spec.model.apply(p, x)
      return measurements.masked_loss(y, z, tasks, num_tasks)

    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, o = _optimizer(spec, lr).update(grads, o, p)
    return optax.apply_updates(p, updates), o, loss

  return jax.vmap(member)(params, opt_state, mixture, learning_rate)


def train_step(spec: EnsembleSpec, state: dict, consts: Constants) -> tuple[dict, jax.Array]:
  """One step of every member: state -> (state, loss (S, P))."""
  params, opt_state, loss = jax.vmap(
      partial(_stream_step, spec), in_axes=(0, 0, 0, 0, 0, 0, None, None))(
          state["params"], state["opt_state"], consts["seeds"], consts["spectrum"],
          consts["mixture"], consts["learning_rate"], consts["basis"], state["step"])
  return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, loss


def train_chunk(spec: EnsembleSpec, state: dict, consts: Constants,
                num_steps: int) -> tuple[dict, jax.Array]:
  """`num_steps` steps in one `lax.scan`: -> (state, mean training loss over the chunk (S, P))."""
  def body(s, _):
    return train_step(spec, s, consts)
  with jax.default_matmul_precision(MATMUL_PRECISION):
    state, losses = jax.lax.scan(body, state, None, length=num_steps)
  return state, losses.mean(0)


def evaluate(spec: EnsembleSpec, params: dict, consts: Constants,
             step: jax.Array) -> dict[str, jax.Array]:
  """Per-task measurements, each (S, P, K).

  fvu: on fresh held-out samples, drawn from the stream's evaluation key at `step` (never used
  in training). population_fvu (exact): linear encoders only, NaN otherwise. Linear encoders also
  return their encoder_map (S, P, N, d), from which the host computes feature capture.
  """
  def one_stream(p_stream, seed, spectrum, basis):
    key = jax.random.fold_in(_stream_key(seed, _EVAL), step)
    x, z = linear_mixture.sample_inputs(key, basis, jnp.sqrt(spectrum).reshape(-1),
                                        spec.train.eval_samples)

    def member(p):
      _, y = spec.model.apply(p, x)
      fvu = measurements.fvu(y, z, spectrum)
      if not spec.model.is_linear:
        return {"fvu": fvu, "population_fvu": jnp.full_like(fvu, jnp.nan)}
      w = spec.model.encoder_map(p)
      exact = measurements.population_fvu(w, p["heads"]["kernel"], basis, spectrum)
      return {"fvu": fvu, "population_fvu": exact, "encoder_map": w}

    return jax.vmap(member)(p_stream)

  with jax.default_matmul_precision(MATMUL_PRECISION):
    return jax.vmap(one_stream, in_axes=(0, 0, 0, None))(
        params, consts["seeds"], consts["spectrum"], consts["basis"])
