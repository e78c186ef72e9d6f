"""Optimisers and learning-rate schedules, with the peak learning rate as a traced value.

Each ensemble member may have its own learning rate (a grid axis), so the optimiser is built
inside the vmapped step from that member's rate. Nothing couples members.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "warmup", "cosine", "warmup_cosine")


def schedule_factor(step: jax.Array, schedule: str, total_steps: int, warmup_steps: int,
                    final_fraction: float) -> jax.Array:
  """Multiplier of the peak learning rate at `step` (0-based)."""
  step = jnp.asarray(step, jnp.float32)
  warm = jnp.minimum(1.0, (step + 1.0) / max(warmup_steps, 1))
  if schedule == "constant":
    return jnp.ones_like(step)
  if schedule == "warmup":
    return warm
  start = warmup_steps if schedule == "warmup_cosine" else 0
  progress = jnp.clip((step - start) / max(total_steps - start, 1), 0.0, 1.0)
  cosine = final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
  if schedule == "cosine":
    return cosine
  if schedule == "warmup_cosine":
    return jnp.where(step < warmup_steps, warm, cosine)
  raise ValueError(f"train.schedule={schedule!r}; allowed: {SCHEDULES}")


def make_optimizer(name: str, learning_rate: jax.Array, schedule: str, total_steps: int,
                   warmup_steps: int = 0, final_fraction: float = 0.0,
                   momentum: float = 0.0) -> optax.GradientTransformation:
  """optax transformation with peak rate `learning_rate` (may be a tracer) and a schedule."""
  if schedule not in SCHEDULES:
    raise ValueError(f"train.schedule={schedule!r}; allowed: {SCHEDULES}")
  def rate(count):
    return learning_rate * schedule_factor(count, schedule, total_steps, warmup_steps,
                                           final_fraction)
  if name == "adam":
    return optax.adam(rate)
  if name == "sgd":
    return optax.sgd(rate, momentum=momentum or None)
  raise ValueError(f"train.optimizer={name!r}; allowed: {OPTIMIZERS}")
