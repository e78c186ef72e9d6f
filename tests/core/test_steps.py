"""The evaluation steps and dispatch ends of a training loop."""

from rare_tasks.core import steps


def test_eval_steps_are_the_multiples_and_the_end():
  assert steps.eval_steps(60, 20) == [20, 40, 60]
  assert steps.eval_steps(50, 20) == [20, 40, 50]
  assert steps.eval_steps(10, 20) == [10]


def test_chunk_bounds_add_dispatch_ends_between_evaluations():
  assert steps.chunk_bounds(100, 40, 25) == [25, 40, 50, 75, 80, 100]
  assert steps.chunk_bounds(8, 4, 2) == [2, 4, 6, 8]
  assert steps.chunk_bounds(10, 5, 50) == [5, 10]
