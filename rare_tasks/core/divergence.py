"""Divergence: a model whose loss (or gradient norm) becomes NaN or infinite is frozen.

Every member of an ensemble carries a `diverged` step: NOT_DIVERGED (-1) while it trains, else
the update (1-based) whose loss, or gradient norm where the optimiser computes one, was not
finite. From that update on its parameters and optimiser state stay as they were before it,
its training losses are NaN, and its records carry NaN measurements and `diverged_step`.
Members share nothing, so the others train exactly as they would without it. Parameters that
overflow while the loss is finite make the next loss non-finite, which freezes the member then.

The decision reads only scalars the step computes anyway, known before the update is applied
(a reduction over the gradients added for it changed how XLA computes them, and 1 and 8 devices
then parted in the fourth digit). The select itself is the only change to a finite run: in the
synthetic track its numbers stay as they were; in the language-model track XLA compiles the
AdamW update around it otherwise, which moves results by a few float32 roundings against runs
made before it (a run and its own resume still agree bit for bit). `finite` tests a whole tree
with one sum (non-finite exactly when a term is, or when terms overflow float32).
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


def guard(before: Any, after: Any, ok: jax.Array, diverged: jax.Array,
          step: jax.Array) -> tuple[Any, jax.Array]:
  """One member's update kept only while it is finite: -> (tree, diverged).

  before, after: the member's trainable tree (parameters, optimiser state) before and after
  update number `step` (1-based); ok: whether that update's loss (and gradient norm) are
  finite, a scalar bool; diverged: the member's diverged step so far. A member that diverges
  here, or did before, keeps `before`.
  """
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
