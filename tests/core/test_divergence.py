"""Tests of rare_tasks/core/divergence.py: the guard keeps an update only while it is finite,
records the step once, and never touches another member; masks and record helpers."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from rare_tasks.core import divergence

NOT = divergence.NOT_DIVERGED


def test_finite_is_false_for_any_nan_or_inf_leaf_and_ignores_integer_leaves():
  good = {"w": jnp.ones((3, 2)), "count": jnp.array(7, jnp.int32)}
  assert bool(divergence.finite(good))
  for bad in (jnp.nan, jnp.inf, -jnp.inf):
    assert not bool(divergence.finite({**good, "w": good["w"].at[1, 0].set(bad)}))
  # float32 overflow of finite terms is divergence too
  assert not bool(divergence.finite({"w": jnp.full((4,), 3e38, jnp.float32)}))


def test_the_guard_keeps_a_finite_update_and_freezes_at_the_first_non_finite_one():
  before = {"w": jnp.array([1.0, 2.0])}
  after = {"w": jnp.array([1.5, 2.5])}
  tree, dv = divergence.guard(before, after, jnp.bool_(True), jnp.int32(NOT), 5)
  np.testing.assert_array_equal(tree["w"], after["w"])
  assert int(dv) == NOT
  # not finite: the update is dropped and the step recorded
  tree, dv = divergence.guard(before, after, jnp.isfinite(jnp.float32(jnp.nan)), jnp.int32(NOT),
                              6)
  np.testing.assert_array_equal(tree["w"], before["w"])
  assert int(dv) == 6
  # once diverged, a later finite update is not taken and the first step is kept
  tree, dv = divergence.guard(before, after, jnp.bool_(True), jnp.int32(6), 9)
  np.testing.assert_array_equal(tree["w"], before["w"])
  assert int(dv) == 6


def test_under_vmap_one_members_divergence_leaves_the_others_bit_identical():
  before = {"w": jnp.arange(6.0).reshape(3, 2)}
  after = {"w": before["w"] * 1.25 + 0.1}
  loss = jnp.array([0.5, jnp.nan, 0.25])
  tree, dv = jax.vmap(divergence.guard, in_axes=(0, 0, 0, 0, None))(
      before, after, jnp.isfinite(loss), jnp.full((3,), NOT, jnp.int32), 4)
  np.testing.assert_array_equal(dv, [NOT, 4, NOT])
  np.testing.assert_array_equal(np.asarray(tree["w"])[[0, 2]], np.asarray(after["w"])[[0, 2]])
  np.testing.assert_array_equal(tree["w"][1], before["w"][1])


def test_masked_sets_floating_leaves_of_diverged_members_to_nan_only():
  values = {"loss": jnp.ones((2, 3)), "per_task": jnp.ones((2, 3, 4)),
            "count": jnp.ones((2, 3), jnp.int32)}
  dv = jnp.array([[NOT, 5, NOT], [NOT, NOT, 2]], jnp.int32)
  out = divergence.masked(values, dv)
  flag = np.array([[False, True, False], [False, False, True]])
  assert np.array_equal(np.isnan(out["loss"]), flag)
  assert np.array_equal(np.isnan(out["per_task"]).all(-1), flag)
  assert not np.isnan(out["per_task"][~flag]).any()
  np.testing.assert_array_equal(out["count"], values["count"])


def test_record_helpers():
  assert divergence.step_of(np.int32(NOT)) is None
  assert divergence.step_of(np.int32(12)) == 12
  out = divergence.nan_measurements({"fvu": [0.1, 0.2], "learned": True, "n": 3,
                                     "task": "copy", "x": np.float32(1.0)})
  assert math.isnan(out["fvu"][0]) and math.isnan(out["fvu"][1])
  assert math.isnan(out["learned"]) and math.isnan(out["n"]) and math.isnan(out["x"])
  assert out["task"] == "copy"
  assert divergence.nan_measurements({"fvu": [0.1]}, missing=None) == {"fvu": [None]}
