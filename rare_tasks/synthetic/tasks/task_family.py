"""The interface every task family implements, and the mixture machinery all families share.

A task family is K tasks, the last `num_rare` of them rare, that one model learns at once. The
trainer, checkpoints, allocation (by ablation), interference and reports only talk to a family
through this interface, so a new family is one module in `rare_tasks/synthetic/tasks/` plus a
line in `rare_tasks/synthetic/tasks/__init__.py`:

- `mixture(rare_frequency, common_exponent)`: the task probabilities (K,).
- `stream_constants(values)` / `shared_constants()`: host arrays the device functions need,
  per data stream (from a grid cell's values: seed, beta, ...) and shared by all cells.
- `sample(key, stream, shared, batch_size)`: the random numbers of one batch, drawn on the
  device and independent of which task each example belongs to, so that cells that differ only
  in their mixture see the same draws (common random numbers).
- `batch(data, tasks, stream, shared)`: the model inputs (B, input_dim) and targets of those
  draws, once every example's task (B,) is known.
- `loss(outputs, targets, tasks, stream, shared)`: the training loss, the batch mean of each
  example's loss on its own task. The train step calls `training_loss`, which by default is
  `loss` of the model's outputs; a family may compute the same number more cheaply (the linear
  mixture: each example through its own task's head only).
- `task_metrics(outputs, targets, tasks, stream, shared)`: per-task metrics {name: (K,)} on an
  evaluation batch whose tasks are balanced (`balanced_tasks`); `loss_name` names the headline
  one, a loss normalised so that predicting nothing scores 1 and a perfect model 0 (a task is
  learned when it is at or below `config.learned.threshold`).
- `ablation_increase(hidden, outputs, targets, tasks, heads, stream, shared)`: the increase of
  every task's headline loss when each last-layer neuron is ablated, (N, K); the default here
  evaluates `task_metrics` once per neuron, a family may give a closed form.
- Measurements read off the weights, on the device (`weight_metrics`, `allocation_shares`,
  `rare_trace`) and finished on the host (`finish_metrics`, `finish_trace`): the trainer hands
  the arrays they return from one to the other without reading them. The defaults measure
  nothing off the weights and allocate neurons by ablation.
- Optional closed-form theory (`Theory`, then `theory`): see `rare_tasks.synthetic.theory`.

A family lists the config.task fields it is built from (`config_fields`) and the models it trains
(`models`); registering it is `rare_tasks.synthetic.tasks.TASKS[name] = Family`.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rare_tasks.analysis import allocation

# Host arrays of a family: {name: array}; on the device, the same names hold jax arrays.
Arrays = dict[str, Any]


def power_law_mixture(num_tasks: int, num_rare: int, rare_frequency: float,
                      common_exponent: float) -> np.ndarray:
  """Task probabilities (K,): each of the last `num_rare` tasks has `rare_frequency`; the common
  tasks k = 0..K-R-1 share the rest in proportion to (k + 1)^(-common_exponent)."""
  num_common = num_tasks - num_rare
  weights = np.arange(1, num_common + 1, dtype=np.float64) ** (-common_exponent)
  common = weights / weights.sum() * (1.0 - num_rare * rare_frequency)
  return np.concatenate([common, np.full(num_rare, rare_frequency)])


def sample_task_uniforms(key: jax.Array, batch_size: int) -> jax.Array:
  """One uniform per example, shape (B,), shared by every cell of a data stream."""
  return jax.random.uniform(key, (batch_size,))


def assign_tasks(uniforms: jax.Array, mixture: jax.Array) -> jax.Array:
  """Task of each example by inverse CDF: uniforms (B,), mixture (K,) -> task ids (B,) int32."""
  cdf = jnp.cumsum(mixture)
  tasks = jnp.sum(uniforms[:, None] >= cdf[None, :], axis=-1)
  return jnp.minimum(tasks, mixture.shape[0] - 1).astype(jnp.int32)


def balanced_tasks(num_examples: int, num_tasks: int) -> np.ndarray:
  """Tasks of an evaluation batch, example i on task i mod K, shape (num_examples,) int32."""
  return (np.arange(num_examples) % num_tasks).astype(np.int32)


def per_task_mean(values: jax.Array, tasks: jax.Array, num_tasks: int) -> jax.Array:
  """Mean of per-example values (B,) over each task's examples, (K,); NaN for a task with none."""
  onehot = jax.nn.one_hot(tasks, num_tasks, dtype=values.dtype)
  count = onehot.sum(0)
  return jnp.where(count > 0, values @ onehot / jnp.maximum(count, 1), jnp.nan)


class TaskFamily:
  """Base class of the task families (frozen dataclasses): the defaults of the interface.

  A family has the fields `num_tasks` (K) and `num_rare` (the last `num_rare` tasks are rare).
  """

  num_tasks: int
  num_rare: int

  # The headline per-task metric (1 = predicting nothing, 0 = perfect) and every per-task
  # metric that `task_metrics` returns.
  loss_name: ClassVar[str] = "loss"
  loss_label: ClassVar[str] = "loss"  # the headline loss in figures and summary.md
  metric_names: ClassVar[tuple[str, ...]] = ("loss",)
  # The class of the family's closed-form optimum (rare_tasks.synthetic.theory.LinearTheory),
  # or None: then nothing is predicted, and reports show the measurements alone.
  Theory: ClassVar[type | None] = None
  # The name of the per-task complexity in results.csv and learning_order.csv.
  complexity_name: ClassVar[str] = "complexity"
  # Per-task measurements beside `metric_names` that results.csv holds (from `weight_metrics`
  # and `finish_metrics`), and results.csv's columns in order (empty: the default order of
  # rare_tasks.synthetic.report.results).
  extra_metric_names: ClassVar[tuple[str, ...]] = ()
  results_columns: ClassVar[tuple[str, ...]] = ()
  # The config.task fields the family is built from (its constructor's arguments), and the
  # models (config.model.name) it can train.
  config_fields: ClassVar[tuple[str, ...]] = ("num_tasks", "num_rare")
  models: ClassVar[tuple[str, ...]] = ()

  @property
  def rare_tasks(self) -> tuple[int, ...]:
    return tuple(range(self.num_tasks - self.num_rare, self.num_tasks))

  @functools.cached_property
  def theory(self) -> Any:
    """The family's closed form bound to it, or None."""
    return None if self.Theory is None else self.Theory(self)

  @property
  def input_dim(self) -> int:
    raise NotImplementedError

  @property
  def output_dim(self) -> int:
    """Number of model outputs."""
    raise NotImplementedError

  def mixture(self, rare_frequency: float, common_exponent: float) -> np.ndarray:
    """Task probabilities pi (K,): the power-law mixture (`power_law_mixture`)."""
    return power_law_mixture(self.num_tasks, self.num_rare, rare_frequency, common_exponent)

  def stream_constants(self, values: dict[str, Any]) -> Arrays:
    """Per-data-stream host arrays from a grid cell's values (none by default)."""
    del values
    return {}

  def shared_constants(self) -> Arrays:
    """Host arrays shared by every cell (none by default)."""
    return {}

  def complexity(self, values: dict[str, Any]) -> np.ndarray:
    """Each task's complexity parameter in a cell, (K,) (reported beside the results)."""
    raise NotImplementedError

  def describe(self, values: dict[str, Any]) -> str:
    """The family in a summary's first lines, at a cell's values (after its name)."""
    return f"({self}, common exponent {values['common_exponent']})"

  def sample(self, key: jax.Array, stream: Arrays, shared: Arrays, batch_size: int) -> Any:
    raise NotImplementedError

  def batch(self, data: Any, tasks: jax.Array, stream: Arrays,
            shared: Arrays) -> tuple[jax.Array, Any]:
    raise NotImplementedError

  def loss(self, outputs: jax.Array, targets: Any, tasks: jax.Array, stream: Arrays,
           shared: Arrays) -> jax.Array:
    raise NotImplementedError

  def training_loss(self, model: Any, params: dict, inputs: jax.Array, targets: Any,
                    tasks: jax.Array, stream: Arrays, shared: Arrays) -> jax.Array:
    """The loss the train step differentiates with respect to `params`: `loss` of the model's
    outputs on inputs (B, input_dim)."""
    _, outputs = model.apply(params, inputs)
    return self.loss(outputs, targets, tasks, stream, shared)

  def task_metrics(self, outputs: jax.Array, targets: Any, tasks: jax.Array, stream: Arrays,
                   shared: Arrays) -> dict[str, jax.Array]:
    raise NotImplementedError

  def ablation_increase(self, hidden: jax.Array, outputs: jax.Array, targets: Any,
                        tasks: jax.Array, heads: jax.Array, stream: Arrays,
                        shared: Arrays) -> jax.Array:
    """Increase of each task's headline loss when each last-layer neuron is ablated, (N, K).

    hidden h (B, N), outputs (B, O) = h H (+ bias), heads kernel H (N, O). The output layer is
    linear, so ablating neuron i changes the outputs by exactly -h_i H_i; one neuron at a time
    (`lax.map`), so memory stays at one batch of outputs.
    """
    base = self.task_metrics(outputs, targets, tasks, stream, shared)[self.loss_name]

    def ablated(i):
      changed = outputs - hidden[:, i, None] * heads[i][None, :]
      return self.task_metrics(changed, targets, tasks, stream, shared)[self.loss_name] - base

    return jax.lax.map(ablated, jnp.arange(hidden.shape[1]))

  def weight_metrics(self, model: Any, params: dict, stream: Arrays,
                     shared: Arrays) -> dict[str, jax.Array]:
    """Device: measurements of one model read off its weights, {name: array} (none here).

    Per-task ones have shape (K,); others are handed to `finish_metrics` on the host.
    """
    del model, params, stream, shared
    return {}

  def allocation_shares(self, model: Any, params: dict, hidden: jax.Array, outputs: jax.Array,
                        targets: Any, tasks: jax.Array, stream: Arrays,
                        shared: Arrays) -> jax.Array:
    """Device: the (N, K) allocation shares of the last hidden layer; by default from ablation
    (`ablation_increase`, normalised per neuron by `analysis.allocation.ablation_shares`)."""
    del model
    increase = self.ablation_increase(hidden, outputs, targets, tasks, params["heads"]["kernel"],
                                      stream, shared)
    return allocation.ablation_shares(increase)

  def finish_metrics(self, metrics: dict[str, np.ndarray], stream: Arrays,
                     shared: Arrays) -> dict[str, np.ndarray]:
    """Host: the measurements of cells laid out (S, P) as written to metrics.jsonl.

    metrics: every evaluation array with leading axes (S, P); stream: per-stream arrays with
    leading axes (S, 1). The default writes them as they are.
    """
    del stream, shared
    return metrics

  def rare_trace(self, model: Any, params: dict, stream: Arrays,
                 shared: Arrays) -> dict[str, jax.Array]:
    """Device: the rare tasks' signal after a step, {name: array} (families with theory)."""
    raise NotImplementedError(f"{type(self).__name__} has no per-step rare signal")

  def finish_trace(self, trace: dict[str, np.ndarray], stream: Arrays,
                   shared: Arrays) -> dict[str, np.ndarray]:
    """Host: a chunk of `rare_trace` arrays, leading axes (T, S, P), as written to traces/;
    stream arrays have leading axes (1, S, 1)."""
    del stream, shared
    return trace
