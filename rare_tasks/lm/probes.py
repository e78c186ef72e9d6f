"""The injected tasks' features in the residual stream, measured at every evaluation
(docs/language_models.md, "The mechanism"); a `Measurement` of the engine's program
(`rare_tasks.lm.program`) that feeds `rare_tasks.analysis.probes`.

Each symbol of a task is fed alone, so it sits where TOK1 sits in an injected row (the row's
first position); the residual stream there is read after the embedding (layer 0) and after every
block (layer l). Per task and member:
  - order_r2: the cross-validated R^2 of the hidden value (the order T_CMP compares, the residue
    T_ADD adds) from the first block's output (PCA to at most min(50, d, p / 2) components, then
    least squares); `order_r2_by_layer` for every layer;
  - fourier_modes: the count of DFT frequencies over the hidden value whose share of the
    representation's power exceeds `factor` times an even spread, summed over the blocks'
    outputs (layers 1..L); `fourier_modes_by_layer` for every layer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from rare_tasks.analysis import probes
from rare_tasks.core import mesh as meshes
from rare_tasks.lm.tasks import Task

FIRST_BLOCK = 1  # index of the first block's output in the residual stream


class Probes:
  """The probes of `task_list` for every member, the symbols replicated over `mesh`."""

  def __init__(self, task_list: Sequence[Task], mesh: jax.sharding.Mesh,
               factor: float = probes.DEFAULT_FACTOR):
    self.names = [t.name for t in task_list]
    self._tokens = np.concatenate([t.symbols for t in task_list]).astype(np.int32)[:, None]
    self._offsets = np.cumsum([0] + [t.num_symbols for t in task_list])
    self._mesh, self.factor = mesh, factor

  @functools.cached_property
  def tokens(self) -> jax.Array:
    """Every task's symbols, each alone, replicated (S, 1)."""
    return jax.device_put(self._tokens, meshes.replicated(self._mesh))

  def measure(self, trainer: Any, state: Any) -> jax.Array:
    """The residual stream at each symbol: (P, num_layers + 1, S, d_model)."""
    return trainer.residuals(state, self.tokens)

  def record(self, member: int, measured: np.ndarray) -> dict[str, Any]:
    """Per task: order_r2, fourier_modes and their values by layer (see the module)."""
    stream = np.asarray(measured)[member]
    r: dict[str, Any] = {}
    for k, name in enumerate(self.names):
      features = stream[:, self._offsets[k]:self._offsets[k + 1]]  # (L + 1, p, d)
      order = np.arange(features.shape[1])
      r2 = [probes.order_r2(f, order) for f in features]
      modes = [probes.fourier_modes(f, self.factor) for f in features]
      r[f"{name}_order_r2"] = _number(r2[FIRST_BLOCK])
      r[f"{name}_order_r2_by_layer"] = [_number(v) for v in r2]
      r[f"{name}_fourier_modes"] = int(sum(modes[FIRST_BLOCK:]))
      r[f"{name}_fourier_modes_by_layer"] = [int(v) for v in modes]
    return r


def _number(v: float) -> float | None:
  return None if not np.isfinite(v) else float(v)
