"""Divergence: a model whose loss or parameters become NaN or infinite is frozen, not trained on.

Every member of an ensemble carries a `diverged` step: NOT_DIVERGED (-1) while it trains, else
the update (1-based) whose loss or resulting parameters were not finite. From that update on
its parameters and optimiser state stay as they were before it (the last finite ones), its
training losses are NaN, and its records carry NaN measurements and `diverged_step`. Members
share nothing, so the others train exactly as they would without it.

The guard is one select per member and step; `finite` sums the tree instead of testing every
element, since a sum is non-finite exactly when a term is (or when finite terms overflow
float32, which is divergence too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

NOT_DIVERGED = -1
# The field of a metrics.jsonl record: the step a model diverged at, or null.
FIELD = "diverged_step"


def finite(tree: Any) -> jax.Array:
  """Whether every floating leaf of one model's tree is finite: a scalar bool."""
  total = jnp.float32(0.0)
  for leaf in jax.tree.leaves(tree):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      total = total + jnp.sum(leaf.astype(jnp.float32))
  return jnp.isfinite(total)


def guard(before: Any, after: Any, loss: jax.Array, diverged: jax.Array,
          step: jax.Array) -> tuple[Any, jax.Array]:
  """One member's update kept only while it is finite: -> (tree, diverged).

  before, after: the member's trainable tree (parameters, optimiser state) before and after
  update number `step` (1-based); loss: that update's loss; diverged: the member's diverged
  step so far. A member that diverges here, or did before, keeps `before`.
  """
  ok = jnp.isfinite(loss) & finite(after)
  alive = diverged == NOT_DIVERGED
  keep = ok & alive
  tree = jax.tree.map(lambda a, b: jnp.where(keep, a, b), after, before)
  return tree, jnp.where(alive & ~ok, jnp.asarray(step, diverged.dtype), diverged)


def masked(values: Any, diverged: jax.Array) -> Any:
  """Floating leaves set to NaN where `diverged` (leading axes of every leaf) is a step."""
  def one(a):
    if not jnp.issubdtype(a.dtype, jnp.floating):
      return a
    flag = (diverged != NOT_DIVERGED).reshape(diverged.shape + (1,) * (a.ndim - diverged.ndim))
    return jnp.where(flag, jnp.nan, a)
  return jax.tree.map(one, values)


def step_of(diverged: Any) -> int | None:
  """A host diverged value as a record's field: the step, or None."""
  value = int(diverged)
  return None if value == NOT_DIVERGED else value


def nan_measurements(values: Mapping[str, Any], missing: Any = math.nan) -> dict[str, Any]:
  """A diverged model's measurements: every number (or list of numbers) replaced by `missing`
  (NaN, or None where NaN is written as null); other values kept."""
  def one(v):
    if isinstance(v, (list, tuple)):
      return [one(x) for x in v]
    if isinstance(v, (bool, int, float)) or hasattr(v, "dtype"):
      return missing
    return v
  return {k: one(v) for k, v in values.items()}
