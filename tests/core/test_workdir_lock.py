"""Tests of rare_tasks/core/workdir_lock.py: a live run's lock refuses a second run, from another
process, another host, or through the command line; a killed run's lock is taken over; the
heartbeat is refreshed; racing processes get one winner; a multi-process run locks once."""

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rare_tasks.core import progress, workdir, workdir_lock
from rare_tasks.core.workdir import LOCK_FILE, WorkdirError
from rare_tasks.synthetic.config import NOT_IDENTITY, base_config

ROOT = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
           XLA_FLAGS="--xla_force_host_platform_device_count=1")
# A process of its own for each mode: "hold DIR" takes the lock and sleeps; "race START_S DIR..."
# takes the lock of each DIR at START_S + i * ROUND_S (read from stdin), holds it for most of
# the round and prints who won; "pair ..." is one of the two processes of a multi-process run.
HELPER = r"""
import json, os, sys, time
from pathlib import Path
from rare_tasks.core import workdir_lock
from rare_tasks.core.workdir import LOCK_FILE, WorkdirError
ROUND_S = 0.4
mode, *args = sys.argv[1:]
if mode == "hold":
  workdir_lock.acquire(args[0], heartbeat_s=0.1)
  print("held", flush=True)
  time.sleep(600)
elif mode == "race":
  print("ready", flush=True)
  start = float(sys.stdin.readline())
  for i, d in enumerate(args):
    t = start + i * ROUND_S
    time.sleep(max(t - time.time() - 0.01, 0))
    while time.time() < t:
      pass
    try:
      lock, outcome = workdir_lock.acquire(d), "won"
    except WorkdirError as e:
      lock, outcome = None, str(e)
    print(json.dumps([d, os.getpid(), outcome]), flush=True)
    time.sleep(max(t + 0.7 * ROUND_S - time.time(), 0))
    if lock is not None:
      lock.release()
elif mode == "pair":
  from jax.experimental import multihost_utils
  from rare_tasks.core import mesh
  busy, free, port, index = args
  mesh.start_processes(f"localhost:{port}", 2, int(index))
  try:
    with workdir_lock.held(busy):
      print(json.dumps(["busy", "entered"]), flush=True)
  except WorkdirError as e:
    print(json.dumps(["busy", str(e)]), flush=True)
  with workdir_lock.held(free):
    print(json.dumps(["free", json.loads((Path(free) / LOCK_FILE).read_text())["pid"]]))
    multihost_utils.sync_global_devices("read")
  print(json.dumps(["after", (Path(free) / LOCK_FILE).exists()]), flush=True)  # process 0
"""


def _helper(*args, stdin=None):
  return subprocess.Popen([sys.executable, "-c", HELPER, *map(str, args)], cwd=ROOT, env=ENV,
                          stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def logged():
  """The rare_tasks log lines emitted during the test."""
  lines = []
  handler = logging.Handler()
  handler.emit = lambda record: lines.append(record.getMessage())
  progress.log.addHandler(handler)
  yield lines
  progress.log.removeHandler(handler)


def _record(**changes):
  """A lock record of this host and pid namespace, as a live run writes it, with `changes`."""
  record = {"pid": os.getpid(), "host": HOST, "pid_namespace": workdir_lock._pid_namespace(),
            "pid_start": workdir_lock._start_time(os.getpid()), "token": "0" * 32,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "heartbeat": time.time()}
  return {**record, **changes}


def _write_lock(path, record):
  path.mkdir(parents=True, exist_ok=True)
  (path / LOCK_FILE).write_text(json.dumps(record))


def _dead_pid():
  proc = subprocess.Popen(["true"])
  proc.wait()
  return proc.pid


def test_a_live_holder_is_named_and_its_lock_taken_over_once_it_is_killed(tmp_path, logged):
  wd = tmp_path / "wd"
  holder = _helper("hold", wd)
  try:
    assert holder.stdout.readline() == "held\n", holder.stderr.read()
    with pytest.raises(WorkdirError) as refused:
      workdir_lock.acquire(wd)
    message = str(refused.value)
    assert "\n" not in message
    assert re.fullmatch(
        rf"{re.escape(str(wd))} is in use by process {holder.pid} on host {re.escape(HOST)} "
        r"\(since \d\d:\d\d:\d\d UTC\); wait for it to finish, or stop it", message), message
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert (wd / LOCK_FILE).exists()  # a kill leaves it behind
  lock = workdir_lock.acquire(wd)
  try:
    assert json.loads((wd / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert logged == [f"{wd}: took over the stale lock of process {holder.pid} on host {HOST} "
                      f"(process {holder.pid} is gone)"]
  finally:
    lock.release()
  assert not (wd / LOCK_FILE).exists()
  assert sorted(p.name for p in wd.iterdir()) == []  # the stale lock moved aside is gone too


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_reused_pid_is_no_holder(tmp_path, logged):
  # This process is alive: with its own start time the lock is live, with another it is stale.
  _write_lock(tmp_path, _record())
  with pytest.raises(WorkdirError, match=f"in use by process {os.getpid()} on host"):
    workdir_lock.acquire(tmp_path)
  _write_lock(tmp_path, _record(pid_start="1"))
  workdir_lock.acquire(tmp_path).release()
  assert logged == [f"{tmp_path}: took over the stale lock of process {os.getpid()} on host "
                    f"{HOST} (pid {os.getpid()} now belongs to a process started later)"]


def test_a_dead_pid_on_this_host_is_taken_over_whatever_its_heartbeat(tmp_path, logged):
  _write_lock(tmp_path, _record(pid=_dead_pid(), pid_start="0"))
  with workdir_lock.held(tmp_path):
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
  assert len(logged) == 1 and "is gone" in logged[0]


def test_another_hosts_lock_lives_while_its_heartbeat_is_fresh(tmp_path, logged):
  _write_lock(tmp_path, _record(pid=4242, host="elsewhere", pid_start=None,
                                heartbeat=time.time() - 5))
  with pytest.raises(WorkdirError, match=r"in use by process 4242 on host elsewhere \(since "
                                         r"\d\d:\d\d:\d\d UTC; heartbeat [56] s ago, stale after "
                                         r"60 s\); wait for it to finish, or stop it$"):
    workdir_lock.acquire(tmp_path, lease_s=60)
  assert logged == []
  _write_lock(tmp_path, _record(pid=4242, host="elsewhere", pid_start=None,
                                heartbeat=time.time() - 61))
  workdir_lock.acquire(tmp_path, lease_s=60).release()
  assert logged == [f"{tmp_path}: took over the stale lock of process 4242 on host elsewhere "
                    "(its last heartbeat was 61 s ago)"]


def test_the_heartbeat_is_refreshed_while_held(tmp_path):
  lock = workdir_lock.acquire(tmp_path, heartbeat_s=0.05)
  try:
    first = json.loads((tmp_path / LOCK_FILE).read_text())
    time.sleep(0.4)
    later = json.loads((tmp_path / LOCK_FILE).read_text())
  finally:
    lock.release()
  assert later["heartbeat"] >= first["heartbeat"] + 0.2
  assert {k: v for k, v in later.items() if k != "heartbeat"} == {
      k: v for k, v in first.items() if k != "heartbeat"}
  assert first["host"] == HOST and first["pid"] == os.getpid() and len(first["token"]) == 32


def test_a_lock_taken_over_meanwhile_is_neither_refreshed_nor_removed(tmp_path, logged):
  lock = workdir_lock.acquire(tmp_path, heartbeat_s=0.05)
  os.rename(tmp_path / LOCK_FILE, tmp_path / "moved")
  (tmp_path / LOCK_FILE).write_text("another run's lock")
  time.sleep(0.3)
  lock.release()
  assert (tmp_path / LOCK_FILE).read_text() == "another run's lock"
  assert len(logged) == 1 and "lock was removed, or taken over by another process" in logged[0]


def test_held_releases_on_an_exception_and_removes_the_directory_it_made_if_empty(tmp_path):
  with pytest.raises(ValueError, match="boom"):
    with workdir_lock.held(tmp_path / "a" / "b"):
      assert (tmp_path / "a" / "b" / LOCK_FILE).exists()
      raise ValueError("boom")
  assert list(tmp_path.iterdir()) == []  # a run refused for its config leaves nothing
  with pytest.raises(ValueError, match="boom"):
    with workdir_lock.held(tmp_path / "c"):
      (tmp_path / "c" / "x").write_text("written")
      raise ValueError("boom")
  assert [p.name for p in (tmp_path / "c").iterdir()] == ["x"]


def test_the_lock_is_no_file_of_a_run_for_the_emptiness_check(tmp_path):
  def prepare(path):
    return workdir.prepare(path, base_config(), False, defaults=base_config(), run_files=(),
                           not_identity=NOT_IDENTITY)

  with workdir_lock.held(tmp_path / "fresh"):
    assert (prepare(tmp_path / "fresh") / "config.json").exists()
  assert not (tmp_path / "fresh" / LOCK_FILE).exists()
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "notes.txt").write_text("not a run")
  with workdir_lock.held(tmp_path / "other"):
    with pytest.raises(WorkdirError, match="not empty and holds no rare_tasks run"):
      prepare(tmp_path / "other")


def test_a_file_or_an_unwritable_path_is_a_workdir_error(tmp_path):
  (tmp_path / "file").write_text("not a folder")
  with pytest.raises(WorkdirError, match="is a file, not a work directory"):
    workdir_lock.acquire(tmp_path / "file")
  with pytest.raises(WorkdirError, match="file/wd: cannot create or write the work directory"):
    with workdir_lock.held(tmp_path / "file" / "wd"):
      pass


def test_processes_racing_for_a_fresh_or_a_stale_lock_get_exactly_one_winner(tmp_path):
  rounds = [tmp_path / f"fresh{i}" for i in range(4)] + [tmp_path / f"stale{i}" for i in range(4)]
  for d in rounds[4:]:
    _write_lock(d, _record(pid=_dead_pid(), pid_start="0"))
  procs = [_helper("race", *rounds, stdin=subprocess.PIPE) for _ in range(2)]
  for p in procs:
    assert p.stdout.readline() == "ready\n", p.stderr.read()
  start = time.time() + 0.2
  for p in procs:
    p.stdin.write(f"{start}\n")
    p.stdin.flush()
  outs = [p.communicate(timeout=60)[0] for p in procs]
  results = [json.loads(line) for out in outs for line in out.splitlines()]
  for d in rounds:
    outcomes = {pid: outcome for name, pid, outcome in results if name == str(d)}
    assert len(outcomes) == 2, results
    winners = [pid for pid, outcome in outcomes.items() if outcome == "won"]
    assert len(winners) == 1, (d, outcomes)
    loser = next(outcome for outcome in outcomes.values() if outcome != "won")
    assert f"in use by process {winners[0]} on host" in loser, (d, outcomes)
    assert sorted(p.name for p in d.iterdir()) == []  # released; nothing left aside


def test_a_multi_process_run_is_locked_by_process_0_and_refused_as_one(tmp_path):
  busy, free = tmp_path / "busy", tmp_path / "free"
  holder = _helper("hold", busy)
  with socket.socket() as s:  # a free port for the coordinator
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  try:
    assert holder.stdout.readline() == "held\n", holder.stderr.read()
    pair = [_helper("pair", busy, free, port, i) for i in range(2)]
    outs = [p.communicate(timeout=120) for p in pair]
  finally:
    holder.kill()
    holder.wait()
  assert [p.returncode for p in pair] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
  zero, one = (dict(json.loads(line) for line in out.splitlines() if line.startswith('["'))
               for out, _ in outs)  # gloo prints lines of its own
  assert f"in use by process {holder.pid} on host" in zero["busy"]
  assert "process 0 could not take the work directory's lock" in one["busy"]
  assert zero["free"] == one["free"] == pair[0].pid  # process 1 took no lock of its own
  assert zero["after"] is False and not (free / LOCK_FILE).exists()


def test_a_second_command_on_a_running_work_directory_exits_2_naming_the_first(tmp_path):
  wd = tmp_path / "wd"
  cmd = [sys.executable, "-m", "experiments.main", "--config=configs/width_by_frequency.py:smoke",
         f"--workdir={wd}"]
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
  first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
  try:
    deadline = time.time() + 120
    while not (wd / LOCK_FILE).exists() and first.poll() is None and time.time() < deadline:
      time.sleep(0.05)
    assert (wd / LOCK_FILE).exists(), first.communicate()[1]
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert first.poll() is None, "the first run ended before the second was refused"
    out, err = first.communicate(timeout=240)
  finally:
    first.kill()
  assert second.returncode == 2, second.stderr
  assert second.stderr.count("\n") == 1, second.stderr
  assert second.stderr.startswith(f"error: {wd} is in use by process {first.pid} on host {HOST}")
  assert first.returncode == 0, err
  assert f"{wd}/summary.md:" in out
  assert not (wd / LOCK_FILE).exists()
