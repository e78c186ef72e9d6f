"""Each example through its own task's head only: y_i = D_{t_i} h_i, without the other K - 1.

Training needs only the own head of every example, K times fewer multiply-adds than every head
on every example. Two exact ways to compute it, chosen by shape (`own_outputs`):

- `gathered`: each example's head weights gathered next to it, (B, N, m), then one product per
  example. It moves B * N * m numbers: cheapest while the encoder is no wider than the number of
  tasks.
- `grouped`: the examples sorted by task, each task's run padded to whole chunks of `chunk`
  rows, and every chunk multiplied by its task's head, a batched matmul over chunks. It moves
  about (B + K * chunk) * N numbers, so it stays cheap for wide encoders.

Both are plain JAX (sorting, gathers, a batched matmul), so their gradients are JAX's own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Rows per chunk of the grouped product: measured on CPU (widths 16 to 128, 16 tasks, batch
# 512), 16 beat 8 and 32 at width 128.
CHUNK = 16


def own_outputs(hidden: jax.Array, heads: jax.Array, tasks: jax.Array) -> jax.Array:
  """hidden h (B, N), heads (K, N, m) (head k is D_k^T), tasks (B,) -> D_{t_i} h_i (B, m)."""
  num_tasks, width, _ = heads.shape
  if width <= num_tasks:
    return gathered(hidden, heads, tasks)
  return grouped(hidden, heads, tasks, CHUNK)


def gathered(hidden: jax.Array, heads: jax.Array, tasks: jax.Array) -> jax.Array:
  """`own_outputs` by gathering each example's head: (B, N), (K, N, m), (B,) -> (B, m)."""
  own = jnp.take(heads, tasks, axis=0, mode="clip")  # (B, N, m)
  return jnp.einsum("bn,bnm->bm", hidden, own)


def grouped(hidden: jax.Array, heads: jax.Array, tasks: jax.Array, chunk: int) -> jax.Array:
  """`own_outputs` as a matmul over task-sorted chunks of `chunk` rows: (B, N), (K, N, m),
  (B,) -> (B, m). Padding rows are zeros, so they add nothing to the outputs or gradients."""
  batch, width = hidden.shape
  num_tasks, _, block = heads.shape
  rows = -(-(batch + num_tasks * (chunk - 1)) // chunk) * chunk  # every task's run padded
  order = jnp.argsort(tasks, stable=True)
  sorted_tasks = tasks[order]
  counts = jnp.bincount(tasks, length=num_tasks)
  padded = (counts + chunk - 1) // chunk * chunk
  padded_end = jnp.cumsum(padded)
  # Row of the padded layout that the j-th example in task order goes to.
  row = (padded_end - padded)[sorted_tasks] + jnp.arange(batch) - (
      jnp.cumsum(counts) - counts)[sorted_tasks]
  source = jnp.full((rows,), batch, jnp.int32).at[row].set(order.astype(jnp.int32))
  padded_hidden = jnp.concatenate([hidden, jnp.zeros((1, width), hidden.dtype)])[source]
  chunk_task = jnp.searchsorted(padded_end, jnp.arange(rows // chunk) * chunk, side="right")
  chunk_heads = jnp.take(heads, chunk_task, axis=0, mode="clip")  # (rows / chunk, N, m)
  out = jnp.einsum("qcn,qnm->qcm", padded_hidden.reshape(-1, chunk, width), chunk_heads)
  row_of_example = jnp.zeros((batch,), jnp.int32).at[order].set(row.astype(jnp.int32))
  return out.reshape(rows, block)[row_of_example]
