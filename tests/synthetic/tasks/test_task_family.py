"""Tests of rare_tasks/synthetic/tasks/task_family.py: the shared mixture machinery, the
interface's default ablation (against the linear closed form and explicit ablation) and its other
defaults, and a third family written against the interface alone run through the grid study."""

import dataclasses
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rare_tasks.synthetic import grid_study
from rare_tasks.synthetic.config import base_config
from rare_tasks.synthetic.models import MLP, EncoderHeads
from rare_tasks.synthetic.report.results import read_results
from rare_tasks.synthetic.tasks import TASKS, LinearMixture, SparseParity, TaskFamily
from rare_tasks.synthetic.tasks import task_family as tf


def test_task_uniforms_are_uniform():
  u = np.asarray(jax.jit(tf.sample_task_uniforms, static_argnums=1)(jax.random.key(0), 50_000))
  chex.assert_shape(u, (50_000,))
  assert u.min() >= 0 and u.max() < 1
  np.testing.assert_allclose(u.mean(), 0.5, atol=0.01)


def test_assign_tasks_golden():
  mixture = jnp.array([0.5, 0.3, 0.2])
  u = jnp.array([0.0, 0.49, 0.5, 0.79, 0.81, 0.999, 1.0])
  np.testing.assert_array_equal(tf.assign_tasks(u, mixture), [0, 0, 1, 1, 2, 2, 2])
  assert tf.assign_tasks(u, mixture).dtype == jnp.int32


def test_assign_tasks_frequencies_match_mixture():
  task = LinearMixture(num_tasks=5, block_size=1, num_rare=1)
  pi = task.mixture(0.02, common_exponent=1.0)
  n = 200_000
  u = tf.sample_task_uniforms(jax.random.key(3), n)
  tasks = np.asarray(jax.jit(tf.assign_tasks)(u, jnp.asarray(pi, jnp.float32)))
  assert tasks.min() >= 0 and tasks.max() <= 4
  counts = np.bincount(tasks, minlength=5)
  se = np.sqrt(pi * (1 - pi) / n)
  np.testing.assert_array_less(np.abs(counts / n - pi), 5 * se)


def test_assign_tasks_is_monotone_coupling():
  task = LinearMixture(num_tasks=6, block_size=1, num_rare=2)
  u = tf.sample_task_uniforms(jax.random.key(4), 20_000)
  rare_sets = []
  for f in (0.001, 0.01, 0.05, 0.2, 0.4):
    t = np.asarray(tf.assign_tasks(u, jnp.asarray(task.mixture(f, 1.0), jnp.float32)))
    rare_sets.append(t >= 4)
  for small, large in zip(rare_sets, rare_sets[1:]):
    assert np.all(large[small]), "a larger rare frequency must keep every rare example"
    assert large.sum() > small.sum()


def test_power_law_mixture_golden():
  pi = tf.power_law_mixture(4, 1, 0.1, 1.0)
  # Common weights 1, 1/2, 1/3 share 0.9; the rare task has 0.1.
  expected = np.r_[np.array([1, 1 / 2, 1 / 3]) / (11 / 6) * 0.9, 0.1]
  np.testing.assert_allclose(pi, expected, rtol=1e-12)
  np.testing.assert_allclose(tf.power_law_mixture(5, 2, 0.05, 0.0), [0.3, 0.3, 0.3, 0.05, 0.05])


def test_assign_tasks_inverse_cdf_and_balanced_tasks():
  tasks = tf.assign_tasks(jnp.array([0.0, 0.49, 0.5, 0.79, 0.8, 0.999999]),
                          jnp.array([0.5, 0.3, 0.2]))
  np.testing.assert_array_equal(tasks, [0, 0, 1, 1, 2, 2])
  np.testing.assert_array_equal(tf.balanced_tasks(7, 3), [0, 1, 2, 0, 1, 2, 0])


def test_per_task_mean_and_a_task_without_examples():
  values = jnp.array([1.0, 3.0, 5.0, 7.0])
  out = np.asarray(tf.per_task_mean(values, jnp.array([0, 0, 2, 2]), 3))
  np.testing.assert_allclose(out[[0, 2]], [2.0, 6.0])
  assert np.isnan(out[1])


def test_default_ablation_equals_the_linear_closed_form():
  # The interface's default (one task_metrics evaluation per ablated neuron) and the linear
  # mixture's closed form must agree on a ReLU encoder with random heads.
  task = LinearMixture(3, 2, basis_seed=3)
  model = EncoderHeads(6, 3, 2, activation="relu", num_hidden_layers=1)
  stream = {"spectrum": jnp.asarray(task.spectrum([0.5, 1.0, 2.0]), jnp.float32)}
  shared = {"basis": jnp.asarray(task.basis_matrix())}

  @jax.jit
  def both():
    params = model.init(jax.random.key(0), task.input_dim)
    params["heads"]["kernel"] = jax.random.normal(jax.random.key(1), (6, 6))
    tasks = jnp.asarray(tf.balanced_tasks(512, 3))
    x, z = task.batch(task.sample(jax.random.key(2), stream, shared, 512), tasks, stream, shared)
    h, y = model.apply(params, x)
    heads = params["heads"]["kernel"]
    return (task.ablation_increase(h, y, z, tasks, heads, stream, shared),
            TaskFamily.ablation_increase(task, h, y, z, tasks, heads, stream, shared))

  closed, default = map(np.asarray, both())
  assert np.abs(closed).max() > 0.1
  np.testing.assert_allclose(default, closed, atol=1e-4)


def test_default_ablation_of_a_parity_mlp_matches_explicit_ablation():
  task = SparseParity(num_tasks=3, num_bits=6, parity_bits=2)
  model = MLP(width=5, num_outputs=1)
  shared = {k: jnp.asarray(v) for k, v in task.shared_constants().items()}
  params = model.init(jax.random.key(0), task.input_dim)
  params["heads"]["kernel"] = jax.random.normal(jax.random.key(1), (5, 1))
  params["heads"]["bias"] = jnp.array([0.3])
  tasks = jnp.asarray(tf.balanced_tasks(300, 3))
  x, y = task.batch(task.sample(jax.random.key(2), {}, shared, 300), tasks, {}, shared)
  h, out = model.apply(params, x)
  increase = np.asarray(task.ablation_increase(h, out, y, tasks, params["heads"]["kernel"], {},
                                               shared))
  base = np.asarray(task.task_metrics(out, y, tasks, {}, shared)["loss"])
  for i in range(5):
    kernel = params["heads"]["kernel"].at[i].set(0.0)
    _, out_i = model.apply({**params, "heads": {**params["heads"], "kernel": kernel}}, x)
    expected = np.asarray(task.task_metrics(out_i, y, tasks, {}, shared)["loss"]) - base
    np.testing.assert_allclose(increase[i], expected, atol=1e-5)
  assert np.abs(increase).max() > 0.01


# The example of a third family in docs/synthetic.md ("Task families"), run through the grid study.
@dataclasses.dataclass(frozen=True)
class TeacherRegression(TaskFamily):
  """Task k: y = w_k . g for Gaussian g (block_size,); the input is [one-hot(k), g]."""

  num_tasks: int
  block_size: int
  num_rare: int = 1
  basis_seed: int = 0

  loss_name: ClassVar[str] = "fvu"
  metric_names: ClassVar[tuple[str, ...]] = ("fvu",)
  config_fields: ClassVar[tuple[str, ...]] = ("num_tasks", "block_size", "num_rare",
                                              "basis_seed")
  models: ClassVar[tuple[str, ...]] = ("mlp",)

  @property
  def input_dim(self) -> int:
    return self.num_tasks + self.block_size

  @property
  def output_dim(self) -> int:
    return 1

  def complexity(self, values):
    return np.ones(self.num_tasks)

  def shared_constants(self):
    rng = np.random.default_rng(self.basis_seed)
    return {"teachers": rng.standard_normal((self.num_tasks, self.block_size), np.float32)}

  def sample(self, key, stream, shared, batch_size):
    return jax.random.normal(key, (batch_size, self.block_size))

  def batch(self, g, tasks, stream, shared):
    x = jnp.concatenate([jax.nn.one_hot(tasks, self.num_tasks), g], axis=-1)
    return x, jnp.sum(g * shared["teachers"][tasks], axis=-1)

  def loss(self, outputs, y, tasks, stream, shared):
    return jnp.mean((outputs[:, 0] - y) ** 2)

  def task_metrics(self, outputs, y, tasks, stream, shared):
    err = (outputs[:, 0] - y) ** 2 / jnp.sum(shared["teachers"][tasks] ** 2, axis=-1)
    return {"fvu": tf.per_task_mean(err, tasks, self.num_tasks)}


def test_a_third_family_runs_through_the_grid_study(tmp_path, monkeypatch):
  monkeypatch.setitem(TASKS, "teacher_regression", TeacherRegression)
  c = base_config()
  c.task.name = "teacher_regression"
  c.task.num_tasks = 4
  c.task.block_size = 3
  c.model.name = "mlp"
  c.model.activation = "relu"
  c.train.steps = 300
  c.train.learning_rate = 1e-2
  c.train.batch_size = 128
  c.grid.width = (16,)
  c.grid.frequency = (0.05,)
  c.eval_every = 150
  c.eval_samples = 400
  c.learned.threshold = 0.3
  c.measure.allocation = True
  c.measure.interference = True
  c.measure.interference_samples = 16
  grid_study.run(c, tmp_path, devices=jax.devices()[:1])
  rows = {int(r["task"]): r for r in read_results(tmp_path)}
  assert float(rows[0]["fvu"]) < 0.3 and rows[0]["learned"] == "True"
  assert float(rows[3]["fvu"]) > float(rows[0]["fvu"])  # the rare task lags
  assert (tmp_path / "allocation.csv").exists() and (tmp_path / "interference.csv").exists()
