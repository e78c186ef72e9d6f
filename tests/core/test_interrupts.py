"""Tests of rare_tasks/core/interrupts.py: the first SIGINT or SIGTERM is a request the run
reads, a second exits at once, and the message says how to resume."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from rare_tasks.core import interrupts


@pytest.fixture
def installed():
  interrupts.install()
  yield
  interrupts.uninstall()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_first_signal_becomes_a_request_and_does_not_stop_the_process(installed, signum):
  assert interrupts.stop_requested() is None
  os.kill(os.getpid(), signum)
  assert interrupts.stop_requested() == signum
  interrupts.uninstall()
  assert interrupts.stop_requested() is None


def test_interrupted_says_where_it_stopped_and_how_to_resume():
  e = interrupts.Interrupted(signal.SIGTERM, "width8_depth0", 120)
  assert str(e) == ("stopped by SIGTERM after step 120 of width8_depth0, with a checkpoint "
                    "there; run the same command to resume")
  assert e.exit_code == 143


def test_a_second_signal_exits_at_once_with_one_line():
  script = textwrap.dedent("""
      import os, signal, time
      from rare_tasks.core import interrupts
      interrupts.install()
      os.kill(os.getpid(), signal.SIGINT)
      print("still running", flush=True)
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(5)
      print("not reached", flush=True)
  """)
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": root}, timeout=120)
  assert out.returncode == 128 + signal.SIGINT
  assert out.stdout == "still running\n"
  err = out.stderr.strip().splitlines()
  assert err[0].startswith("SIGINT received: finishing the chunk in flight")
  assert err[-1].startswith("error: second SIGINT: exiting at once")
  assert "Traceback" not in out.stderr
