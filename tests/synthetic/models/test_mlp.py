"""Tests of rare_tasks/synthetic/models/mlp.py: shapes, biases, zero output layer, shared
parameters."""

import jax
import jax.numpy as jnp
import numpy as np

from rare_tasks.synthetic.models import MLP, MODELS
from rare_tasks.synthetic.tasks import SparseParity


def test_shapes_biases_and_zero_output_layer():
  task = SparseParity(num_tasks=4, num_bits=6)
  model = MODELS["mlp"].for_task(task, width=7, activation="relu", num_hidden_layers=1)
  assert model == MLP(width=7, num_outputs=1, activation="relu", num_hidden_layers=1)
  params = model.init(jax.random.key(0), task.input_dim)
  shapes = jax.tree.map(np.shape, params)
  assert shapes == {"encoder": {"kernel": (10, 7), "bias": (7,)},
                    "hidden_0": {"kernel": (7, 7), "bias": (7,)},
                    "heads": {"kernel": (7, 1), "bias": (1,)}}
  x = jax.random.normal(jax.random.key(1), (5, 10))
  h, y = model.apply(params, x)
  assert h.shape == (5, 7) and y.shape == (5, 1)
  np.testing.assert_array_equal(y, 0.0)  # an untrained model is at chance
  assert (np.asarray(h) >= 0).all()
  # Every parameter is shared: the task code is an input.
  assert model.task_specific == () and not model.is_linear


def test_hidden_layer_is_relu_of_affine_map():
  model = MLP(width=3, num_outputs=2)
  params = model.init(jax.random.key(0), 4)
  params["encoder"]["bias"] = jnp.array([0.5, -0.5, 0.0])
  x = jax.random.normal(jax.random.key(1), (6, 4))
  h, _ = model.apply(params, x)
  expected = np.maximum(np.asarray(x) @ np.asarray(params["encoder"]["kernel"]) +
                        np.asarray(params["encoder"]["bias"]), 0)
  np.testing.assert_allclose(h, expected, rtol=1e-5, atol=1e-6)
