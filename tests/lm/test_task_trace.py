"""The task-loss trace: a seeded subsample of train instances; the chunk's traced losses equal the
loss measured after each update by hand, and tracing leaves training bit for bit unchanged;
records and the signal rebuilt from them."""

import jax
import jax.numpy as jnp
import numpy as np

from rare_tasks.lm import sharding, tasks
from rare_tasks.lm.ladder import Shape
from rare_tasks.lm.model import Model, ModelSpec, token_losses
from rare_tasks.lm.task_trace import TaskTrace, member_trace, subsample
from rare_tasks.lm.trainer import Trainer, TrainSpec

SPEC = ModelSpec(Shape(16, 1, 2, 32), vocab_size=64)
TRAIN = TrainSpec(steps=20, learning_rate=3e-3, warmup_steps=2)
TASKS = tasks.make_tasks(("comparison", "addition"), 6, 64, 0, 63, False, "ordered")


def _mesh():
  return sharding.make_mesh(jax.devices()[:1], 1, 1)


def test_the_subsample_is_seeded_sorted_and_from_the_train_split():
  rows = subsample(TASKS, 5, seed=3)
  assert rows.shape == (2, 5)
  for t, r in zip(TASKS, rows):
    assert set(r.tolist()) <= set(t.train.tolist()) and list(r) == sorted(r)
  np.testing.assert_array_equal(rows, subsample(TASKS, 5, seed=3))
  assert not np.array_equal(rows, subsample(TASKS, 5, seed=4))
  assert subsample(TASKS, 1000, seed=0).shape == (2, min(len(t.train) for t in TASKS))


def test_the_traced_loss_is_the_loss_after_each_update_and_training_is_unchanged():
  trainer = Trainer(Model(SPEC), TRAIN, 2, _mesh())
  trace = TaskTrace(TASKS, 8, 0, trainer.mesh)
  batches = jax.random.randint(jax.random.key(1), (3, 8, 17), 0, 63)
  rows = np.full((3, 2, 8, 4), -1, np.int32)
  rows[1, 0, 2] = (*TASKS[0].instances[TASKS[0].train[0]], 63)
  plain, parts = trainer.chunk(trainer.init(np.array([0, 1])), batches, jnp.asarray(rows))
  traced, traced_parts = trainer.chunk(trainer.init(np.array([0, 1])), batches,
                                       jnp.asarray(rows), trace.arrays())
  # Bit for bit: the trace reads the parameters, it never changes them.
  for a, b in zip(jax.tree.leaves(jax.device_get(plain)), jax.tree.leaves(jax.device_get(traced))):
    np.testing.assert_array_equal(a, b)
  for k in parts:
    np.testing.assert_array_equal(parts[k], traced_parts[k])
  got = np.asarray(traced_parts["task_trace"])
  assert got.shape == (3, 2, 2)
  # The last row is the loss of the final parameters, measured here by hand.
  prefixes, labels = (np.asarray(a) for a in trace.arrays())
  for m in range(2):
    p = jax.tree.map(lambda a, m=m: a[m], traced["params"])
    for t in range(2):
      logits = trainer.model.apply(p, jnp.asarray(prefixes[t]))[:, -1]
      ce, _ = token_losses(logits, jnp.asarray(labels[t]))
      np.testing.assert_allclose(got[-1, m, t], float(ce.mean()), rtol=1e-5)
  # Member 0 trained on an instance of task 0 at update 1; member 1 did not: they differ.
  assert not np.allclose(got[1:, 0, 0], got[1:, 1, 0])


def test_records_and_the_signal_rebuilt_from_them():
  trace = TaskTrace(TASKS, 4, 0, _mesh())
  values = np.array([[1.0, 2.0], [0.5, 1.5], [0.25, 1.25]], np.float32)
  first = trace.record(0, 3, values[:2])
  second = trace.record(0, 5, values[2:])
  assert first == {"trace_first": 3, "comparison_trace_loss": [1.0, 0.5],
                   "addition_trace_loss": [2.0, 1.5]}
  assert trace.record(0, 6, None) == {"trace_first": None, "comparison_trace_loss": None,
                                      "addition_trace_loss": None}
  signal = member_trace([first, second], "addition", 6)
  np.testing.assert_array_equal(signal, [np.nan, np.nan, np.nan, 2.0, 1.5, 1.25, np.nan])
