"""Multitask sparse parity (Michaud et al. 2023, the quantization model), on the device.

K tasks; task t owns a secret set S_t of k_t of the n bit positions (drawn once from
`secret_seed`). An example of task t is the input x = [one-hot(t) (K), bits b (n)], b uniform in
{0, 1}^n, and its label is the parity of the task's secret bits, y = sum_{i in S_t} b_i mod 2.
The task code tells the model which parity to compute; task frequencies follow the mixture
(power law plus rare tasks, `task_family.power_law_mixture`), and complexity is k_t. The model
has one output, the logit of y = 1.

Per-task metrics: `loss`, the cross-entropy in bits (1 = chance, the headline loss) and
`accuracy`. The bits of a step depend only on the data stream, the task code on the cell's
mixture: cells of a stream share the bits (common random numbers).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rare_tasks.synthetic.tasks.task_family import Arrays, TaskFamily, per_task_mean


@dataclasses.dataclass(frozen=True)
class SparseParity(TaskFamily):
  """Multitask sparse parity.

  Attributes:
    num_tasks: K.
    num_bits: n, the random bits of every example.
    parity_bits: k, the size of every task's secret set: one number, or one per task.
    num_rare: the last `num_rare` tasks are rare.
    secret_seed: seed of the secret sets; the tasks are fixed across grid seeds.
  """

  num_tasks: int
  num_bits: int
  parity_bits: int | tuple[int, ...] = 3
  num_rare: int = 1
  secret_seed: int = 0

  loss_name: ClassVar[str] = "loss"
  metric_names: ClassVar[tuple[str, ...]] = ("loss", "accuracy")
  config_fields: ClassVar[tuple[str, ...]] = ("num_tasks", "num_bits", "parity_bits",
                                              "num_rare", "secret_seed")
  models: ClassVar[tuple[str, ...]] = ("mlp",)

  @property
  def input_dim(self) -> int:
    return self.num_tasks + self.num_bits

  @property
  def output_dim(self) -> int:
    return 1

  def bits_per_task(self) -> np.ndarray:
    """k_t for every task, (K,) int."""
    return np.broadcast_to(np.asarray(self.parity_bits, dtype=np.int64), (self.num_tasks,))

  def secrets(self) -> np.ndarray:
    """The secret sets as (K, k_max) bit indices, padded with -1 past each task's k_t."""
    rng = np.random.default_rng(self.secret_seed)
    ks = self.bits_per_task()
    out = np.full((self.num_tasks, max(int(ks.max()), 1)), -1, dtype=np.int32)
    for t, k in enumerate(ks):
      out[t, :k] = np.sort(rng.choice(self.num_bits, size=int(k), replace=False))
    return out

  def complexity(self, values: dict[str, Any]) -> np.ndarray:
    return self.bits_per_task().astype(np.float64)

  def shared_constants(self) -> Arrays:
    secrets = self.secrets()
    return {"secrets": np.maximum(secrets, 0), "secret_mask": (secrets >= 0).astype(np.int32)}

  def sample(self, key: jax.Array, stream: Arrays, shared: Arrays, batch_size: int) -> jax.Array:
    """The bits of a batch, (B, n) int32 in {0, 1}."""
    return jax.random.bernoulli(key, 0.5, (batch_size, self.num_bits)).astype(jnp.int32)

  def batch(self, data: jax.Array, tasks: jax.Array, stream: Arrays,
            shared: Arrays) -> tuple[jax.Array, jax.Array]:
    """Inputs (B, K + n) float32 and labels (B,) int32 of bits `data` for tasks (B,)."""
    return (jnp.concatenate([jax.nn.one_hot(tasks, self.num_tasks, dtype=jnp.float32),
                             data.astype(jnp.float32)], axis=-1),
            labels(data, tasks, shared["secrets"], shared["secret_mask"]))

  def _cross_entropy(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
    return optax.sigmoid_binary_cross_entropy(outputs[:, 0], targets.astype(outputs.dtype))

  def loss(self, outputs, targets, tasks, stream, shared):
    """Mean cross-entropy (nats) of the logits (B, 1) against the labels (B,)."""
    return self._cross_entropy(outputs, targets).mean()

  def task_metrics(self, outputs, targets, tasks, stream, shared):
    """Per task (K,): cross-entropy in bits, and accuracy (logit > 0 predicts 1)."""
    bits = self._cross_entropy(outputs, targets) / math.log(2.0)
    correct = ((outputs[:, 0] > 0) == (targets == 1)).astype(outputs.dtype)
    return {"loss": per_task_mean(bits, tasks, self.num_tasks),
            "accuracy": per_task_mean(correct, tasks, self.num_tasks)}


def labels(bits: jax.Array, tasks: jax.Array, secrets: jax.Array,
           secret_mask: jax.Array) -> jax.Array:
  """Parity of each example's secret bits: bits (B, n), tasks (B,), secrets and secret_mask
  (K, k_max) -> (B,) int32 in {0, 1}."""
  picked = jnp.take_along_axis(bits, secrets[tasks], axis=1) * secret_mask[tasks]
  return picked.sum(-1) % 2


def reference_labels(bits: np.ndarray, tasks: Sequence[int], secret_sets: Sequence[Sequence[int]]
                     ) -> np.ndarray:
  """The labels computed example by example in Python (for tests and the benchmark's loop)."""
  return np.array([sum(int(bits[i, j]) for j in secret_sets[t]) % 2
                   for i, t in enumerate(tasks)], dtype=np.int32)
