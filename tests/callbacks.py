"""Engine callbacks the tests use to stop a run part way, as a kill would."""

from rare_tasks.core import engine


class Killed(Exception):
  """What kill_at raises: the run stops there, as a kill would."""


def kill_at(step: int, when: str = "chunk") -> engine.Callback:
  """A callback that raises Killed once the run reaches `step` (after a chunk, or `when`)."""
  def fn(event: engine.Event) -> None:
    if event.step == step:
      raise Killed
  return engine.Callback(fn, when=when)


def after_chunk(fn) -> engine.Callback:
  """A callback after every chunk calling fn(program name, step reached)."""
  return engine.Callback(lambda event: fn(event.program.name, event.step))
