"""Optimisers and learning-rate schedules of both tracks.

The synthetic track's (`make_optimizer`): Adam or SGD with the peak learning rate as a traced
value, since each ensemble member may have its own rate (a grid axis), so the optimiser is built
inside the vmapped step from that member's rate. The language-model track's (`clipped_adamw`):
AdamW after clipping by the global gradient norm, on a linear warmup and cosine decay
(`warmup_cosine`), weight decay where a mask says. Nothing couples members.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def warmup_cosine(peak: float, steps: int, warmup_steps: int,
                  final_fraction: float) -> optax.Schedule:
  """Learning rate at update `count` (0-based): 0 -> peak over warmup_steps, then a cosine down
  to final_fraction * peak at the last step."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup_steps,
      decay_steps=max(steps, warmup_steps + 1), end_value=peak * final_fraction)


def clipped_adamw(schedule: optax.Schedule, b1: float, b2: float, eps: float,
                  weight_decay: float, grad_clip: float,
                  decay_mask: Callable[[Any], Any]) -> optax.GradientTransformation:
  """AdamW on `schedule` after clipping the gradient to global norm `grad_clip`; weight decay
  only where decay_mask(params) is True."""
  return optax.chain(
      optax.clip_by_global_norm(grad_clip),
      optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask))
