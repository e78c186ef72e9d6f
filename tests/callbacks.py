"""Engine callbacks the tests use to stop a run part way, as a kill would."""

from rare_tasks.core import engine


def after_chunk(fn) -> engine.Callback:
  """A callback after every chunk calling fn(program name, step reached)."""
  return engine.Callback(lambda event: fn(event.program.name, event.step))
