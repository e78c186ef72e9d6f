"""Signals and damaged checkpoints through the command line, both tracks: SIGTERM or SIGINT
stops a run after the chunk in flight with a checkpoint and one line (exit 128 + the signal),
and the same command resumes it to the records of a run left alone; a latest checkpoint damaged
before the resume (a file cut short, its commit marker gone) is reported, set aside and the one
before it used. In a two-process run, a signal to one process stops both at the same step."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rare_tasks.core import checkpoints, workdir
from tests import processes
from tests.lm.test_pretrain import _tiny_flags

ROOT = Path(__file__).resolve().parents[2]
TRACKS = {
    "synthetic": (["--config=configs/width_by_frequency.py:smoke", "--config.train.steps=600",
                   "--config.eval_every=50", "--config.checkpoint_interval_s=0",
                   "--config.grid.frequency=(0.03,0.2)", "--config.grid.width=(2,8)"],
                  ("cell", "step")),
    "lm": (["--config=configs/lm_pretrain.py:smoke", "--config.checkpoint_interval_s=0",
            "--config.train.steps=100"], ("member", "step")),
}
TIME_FIELD = re.compile(r"per_s$")
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))


def _command(track: str, wd: Path) -> list[str]:
  return [sys.executable, "-m", "experiments.main", *TRACKS[track][0], f"--workdir={wd}",
          "--cpu_devices=2"]


def _records(wd: Path, track: str) -> list[dict]:
  return [{k: v for k, v in r.items() if not TIME_FIELD.search(k)}
          for r in workdir.read_metrics(wd, TRACKS[track][1])]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """Each track's run left alone."""
  out = {}
  for track in TRACKS:
    wd = tmp_path_factory.mktemp(f"ref_{track}") / "wd"
    done = subprocess.run(_command(track, wd), cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out[track] = _records(wd, track)
  return out


def _stopped(track: str, wd: Path, signum: int) -> tuple[subprocess.CompletedProcess, int]:
  """The run sent `signum` once its first trained evaluation is written; -> (the finished
  process, the step it stopped after)."""
  proc = subprocess.Popen(_command(track, wd), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 300
  while not any(r["step"] > 0 for r in workdir.read_metrics(wd, TRACKS[track][1])):
    assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
    time.sleep(0.05)
  proc.send_signal(signum)
  out, err = proc.communicate(timeout=300)
  done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
  last = err.strip().splitlines()[-1]
  m = re.fullmatch(rf"error: stopped by {signal.Signals(signum).name} after step (\d+) of "
                   r"\S+, with a checkpoint there; run the same command to resume", last)
  assert m, err[-2000:]
  return done, int(m.group(1))


def _newest_checkpoint(wd: Path) -> Path:
  """The folder of the newest checkpoint step of any program."""
  steps = [p for p in (wd / "checkpoints").rglob("*")
           if p.name.isdigit() and (p / checkpoints.COMMIT_MARKER).exists()]
  return max(steps, key=lambda p: p.stat().st_mtime_ns)


def _damage_latest(wd: Path, how: str) -> int:
  """Cuts the data files of the newest checkpoint in half, or removes its commit marker; -> its
  step. (Flipped bytes are tested in tests/core/test_checkpoints.py, where the bytes
  flipped are known to be an array's: in these small models, the largest file may hold only
  orbax's index, whose damage changes nothing restored.)"""
  newest = _newest_checkpoint(wd)
  if how == "no_commit_marker":
    (newest / checkpoints.COMMIT_MARKER).unlink()
    return int(newest.name)
  for f in newest.rglob("d/*"):
    data = f.read_bytes()
    f.write_bytes(data[:len(data) // 2])
  return int(newest.name)


@pytest.mark.parametrize("track, signum, damage", [
    ("synthetic", signal.SIGTERM, None), ("synthetic", signal.SIGTERM, "truncated"),
    ("lm", signal.SIGINT, "no_commit_marker")])
def test_a_signal_stops_after_a_checkpoint_and_the_same_command_resumes_to_the_same_records(
    reference, tmp_path, track, signum, damage):
  wd = tmp_path / "wd"
  done, step = _stopped(track, wd, signum)
  assert done.returncode == 128 + signum and "Traceback" not in done.stderr
  assert f"{signal.Signals(signum).name} received" in done.stderr
  if damage is not None:
    damaged = _damage_latest(wd, damage)
  resumed = subprocess.run(_command(track, wd), cwd=ROOT, env=ENV, capture_output=True,
                           text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "Traceback" not in resumed.stderr
  if damage is None:
    assert f"resuming from the checkpoint at step {step}" in resumed.stderr
  else:  # the stop's own checkpoint is the newest: the one before it is used

    assert f"the checkpoint at step {damaged} cannot be restored" in resumed.stderr
    assert len(list(wd.glob("**/*.damaged/*"))) == 1
  assert _records(wd, track) == reference[track]


def test_a_signal_to_one_of_two_processes_stops_both_at_the_same_step(tmp_path):
  flags = [*_tiny_flags(), "--config.train.steps=200", "--config.eval_every=20"]
  wd = tmp_path / "wd"
  procs = processes.start([*flags, f"--workdir={wd}"])
  deadline = time.monotonic() + 300
  while not any(r["step"] > 0 for r in workdir.read_metrics(wd, ("member", "step"))):
    assert all(p.poll() is None for p in procs) and time.monotonic() < deadline
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGTERM)
  errs = [p.communicate(timeout=300)[1] for p in procs]
  assert [p.returncode for p in procs] == [128 + signal.SIGTERM] * 2, errs[0][-1500:]
  steps = {re.search(r"after step (\d+) of", e.strip().splitlines()[-1]).group(1) for e in errs}
  assert len(steps) == 1  # the same step on both
  assert (wd / "checkpoints" / steps.pop()).is_dir()
