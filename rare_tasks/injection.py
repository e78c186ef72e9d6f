"""How rare examples reach the training batches: one schedule for every track.

Two schedules. "steady": every example's task is drawn i.i.d. from the mixture, so a rare task's
long-run frequency is its probability. "bursts": the rare tasks are withheld for the first
`withhold_steps` updates; afterwards every update t with (t - withhold_steps) % gap == 0 is a
burst whose batch of `batch_size` examples holds exactly n = frequency * gap * batch_size
examples of each rare task, and every other update holds none. Over whole periods each rare
task's examples are exactly a fraction `frequency` of the injection phase; gap = 1 is steady
exposure at the same frequency.

A long-run rate that is not a whole number of examples per burst (the language-model track's
injected instances) is spread deterministically: burst k (0-based) carries
floor(R (k + 1)) - floor(R k) examples, R = rate * gap as an exact fraction, so the first k
bursts hold floor(R k) examples and the long-run frequency is exact, not Poisson. A whole R
gives every burst R examples, the schedule above.

The host functions plan and check a schedule; `examples_at` evaluates it inside a traced step.
"""

from __future__ import annotations

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

SCHEDULES = ("steady", "bursts")
_WHOLE_RTOL = 1e-6


def burst_size(frequency: float, gap: int, batch_size: int, num_rare: int = 1) -> int:
  """Examples of one rare task in a burst batch, n = frequency * gap * batch_size, for a rare
  task's long-run `frequency` per example.

  Raises ValueError unless n is a whole number (to 1e-6 relative) with
  1 <= n <= batch_size // num_rare (every rare task's burst fits in one batch).
  """
  if gap < 1 or batch_size < 1:
    raise ValueError(f"gap ({gap}) and batch_size ({batch_size}) must be >= 1")
  n = float(frequency) * gap * batch_size
  where = (f"frequency={frequency}, gap={gap}, batch_size={batch_size} give "
           f"n = frequency * gap * batch_size = {n}")
  if not math.isfinite(n):
    raise ValueError(f"{where}; n must be finite")
  whole = round(n)
  if abs(n - whole) > _WHOLE_RTOL * max(1.0, abs(n)):
    raise ValueError(f"{where}; n must be a whole number of examples")
  if whole < 1 or whole > batch_size // num_rare:
    raise ValueError(f"{where}; n must satisfy 1 <= n <= batch_size // num_rare "
                     f"({batch_size // num_rare} with {num_rare} rare task(s))")
  return int(whole)


def burst_updates(steps: int, withhold_steps: int, gap: int) -> np.ndarray:
  """Update indices of the bursts, ascending int64 of shape (num_bursts,)."""
  if gap < 1 or withhold_steps < 0 or steps < 0:
    raise ValueError(f"need gap >= 1, withhold_steps >= 0, steps >= 0; got gap={gap}, "
                     f"withhold_steps={withhold_steps}, steps={steps}")
  return np.arange(withhold_steps, steps, gap, dtype=np.int64)


def rare_examples_per_update(steps: int, withhold_steps: int, gap: int,
                             burst_size: int) -> np.ndarray:
  """Rare examples of each rare task in each update's batch, int64 of shape (steps,)."""
  return counts_per_update(0, steps, withhold_steps, gap, Fraction(burst_size, gap))


def exact_rate(value: float | int | Fraction) -> Fraction:
  """A rate as an exact fraction: a float by its shortest decimal repr (0.1 is 1/10)."""
  if isinstance(value, Fraction):
    return value
  return Fraction(repr(float(value))) if isinstance(value, float) else Fraction(value)


def bursts_before(step: int, withhold_steps: int, gap: int) -> int:
  """How many burst updates come before update `step` (0-based)."""
  since = step - withhold_steps
  return 0 if since <= 0 else -(-since // gap)


def examples_before(step: int, withhold_steps: int, gap: int, rate: Fraction) -> int:
  """Examples of one task in updates 0 .. step - 1, at `rate` examples per update in the long
  run: floor(rate * gap * bursts before `step`)."""
  per_burst = exact_rate(rate) * gap
  return (per_burst.numerator * bursts_before(step, withhold_steps, gap)) // per_burst.denominator


def counts_per_update(first_step: int, num_steps: int, withhold_steps: int, gap: int,
                      rate: Fraction) -> np.ndarray:
  """Examples of one task in updates first_step .. first_step + num_steps - 1, int64 of shape
  (num_steps,): burst k carries floor(R (k + 1)) - floor(R k), R = rate * gap."""
  if gap < 1 or withhold_steps < 0 or first_step < 0 or num_steps < 0:
    raise ValueError(f"need gap >= 1, withhold_steps >= 0, first_step >= 0, num_steps >= 0; "
                     f"got gap={gap}, withhold_steps={withhold_steps}, "
                     f"first_step={first_step}, num_steps={num_steps}")
  bounds = [examples_before(t, withhold_steps, gap, rate)
            for t in range(first_step, first_step + num_steps + 1)]
  return np.diff(np.asarray(bounds, dtype=np.int64))


def largest_burst(rate: Fraction, gap: int) -> int:
  """The most examples of one task any burst carries: ceil(rate * gap)."""
  per_burst = exact_rate(rate) * gap
  return -(-per_burst.numerator // per_burst.denominator)


def examples_at(step: jax.Array, withhold_steps: int, gap: jax.Array,
                burst_size: jax.Array) -> jax.Array:
  """Traced: examples of each rare task in the batch of update `step` (burst_size or 0)."""
  since = step - withhold_steps
  return jnp.where((since >= 0) & (since % gap == 0), burst_size, 0)
