"""Stopping a run cleanly on SIGINT or SIGTERM, and at once on a second one.

`install` (the command line calls it) turns the first SIGINT or SIGTERM into a request: the
engine finishes the chunk in flight, writes the records it holds and a checkpoint, and raises
Interrupted, which the command line prints as one line saying how to resume. A second signal
exits at once (the work since the last checkpoint is lost, nothing already written is). In a
multi-process run the processes agree after every chunk (`stop_requested` is collective), so
all of them stop at the same step: a checkpoint needs every process.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []


class Interrupted(Exception):
  """A run stopped on request after writing a checkpoint."""

  def __init__(self, signum: int, program: str, step: int):
    self.signum, self.program, self.step = signum, program, step
    super().__init__(f"stopped by {signal.Signals(signum).name} after step {step} of {program}, "
                     "with a checkpoint there; run the same command to resume")

  @property
  def exit_code(self) -> int:
    """The shell's convention for a process ended by a signal."""
    return 128 + self.signum


def _handle(signum: int, frame) -> None:
  del frame
  if _received:
    print(f"error: second {signal.Signals(signum).name}: exiting at once; the same command "
          "resumes from the last checkpoint", file=sys.stderr, flush=True)
    os._exit(128 + signum)
  _received.append(signum)
  print(f"{signal.Signals(signum).name} received: finishing the chunk in flight and writing a "
        "checkpoint (send it again to exit at once)", file=sys.stderr, flush=True)


def install() -> None:
  """Handles SIGINT and SIGTERM as stop requests from now on (main thread only)."""
  _received.clear()
  if threading.current_thread() is threading.main_thread():
    for s in SIGNALS:
      signal.signal(s, _handle)


def uninstall() -> None:
  """Back to Python's handling of SIGINT and SIGTERM; forgets a request."""
  _received.clear()
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def request(signum: int = signal.SIGTERM) -> None:
  """Records a stop request as a signal would (for programs that stop a run themselves)."""
  if not _received:
    _received.append(signum)


def stop_requested() -> int | None:
  """The signal that asked this run to stop, or None; in a multi-process run the same answer on
  every process (any process's request), which makes this a collective call."""
  local = _received[0] if _received else 0
  if jax.process_count() > 1:
    local = int(np.max(multihost_utils.process_allgather(np.int32(local))))
  return local or None
