"""A full disk through the command line, for both tracks: the run ends with one line naming the
file it could not write and the space left, what it wrote before stays valid, and the same
command, run again once there is space, resumes to the records of a run left alone.

Two ways to fill the disk: a real size-limited file system (a tmpfs in a user and mount
namespace; skipped where the machine allows none), grown between two runs of the same command;
and chosen writes made to fail inside the process (tests/full_disk.py), which works everywhere.
The scenarios run two at a time when the module starts; each test checks one of them.
"""

import concurrent.futures
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rare_tasks.core import workdir

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = ["--config=configs/width_by_frequency.py:smoke", "--config.train.steps=400",
             "--config.eval_every=50", "--config.checkpoint_interval_s=0",
             "--config.grid.frequency=(0.03,0.2)", "--config.grid.width=(2,8)"]
# A checkpoint only at the end of each group: the work directory's size before the report is
# then the same at every run (no old checkpoint waiting to be deleted).
SYNTHETIC_ENDS = [a.replace("interval_s=0", "interval_s=600") for a in SYNTHETIC]
LM = ["--config=configs/lm_pretrain.py:smoke", "--config.train.steps=50",
      "--config.checkpoint_interval_s=0"]
KEYS = {"synthetic": ("cell", "step"), "lm": ("member", "step")}
# Fields that measure time, and so differ between any two runs.
TIME_FIELD = re.compile(r"per_s$|wall|elapsed|seconds|duration|_time$|^time")
# The runs of the same command in a namespace: a tmpfs mounted at $1 with the first size, grown
# to the next size before each later run; the work directory copied out to $2 at the end. With
# a size $4, a tmpfs of that size at $1-cache holds the compilation cache.
NAMESPACE_SCRIPT = """
set -u
mnt=$1; out=$2; sizes=$3; cache=$4; shift 4
mkdir -p "$mnt" "$mnt-cache" || exit 97
if [ -n "$cache" ]; then mount -t tmpfs -o size="$cache" tmpfs "$mnt-cache" || exit 97; fi
i=0
for size in $sizes; do
  if [ $i = 0 ]; then how=""; else how="remount,"; fi
  mount -t tmpfs -o "${how}size=$size" tmpfs "$mnt" || exit 98
  "$@" > "$out/out$i" 2> "$out/err$i"; echo $? > "$out/rc$i"
  i=$((i + 1))
done
cp -a "$mnt/wd" "$out/wd"
"""
# A run whose chosen write fails (tests/full_disk.py's inject): argv[1] the spec, then main's.
DRIVER = """
import runpy, sys
import pytest
from tests import full_disk
spec = sys.argv.pop(1)
full_disk.inject(pytest.MonkeyPatch(), spec)
runpy.run_module("experiments.main", run_name="__main__", alter_sys=True)
"""


@dataclasses.dataclass
class Scenario:
  """The runs of one command: their exit codes and stderr, and the work directory they left
  (a copy, for the namespace's); `named` is the work directory as the command names it."""

  codes: list[int]
  errors: list[str]
  wd: Path
  named: Path


def _env() -> dict[str, str]:
  """The test session's environment without its forced device count (--cpu_devices decides)."""
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if "xla_force_host_platform_device_count" not in f]
  return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), XLA_FLAGS=" ".join(flags))


def _main(track_args: list[str], wd: Path, cache: str) -> list[str]:
  return ["-m", "experiments.main", *track_args, f"--workdir={wd}", "--cpu_devices=2",
          f"--compilation_cache_dir={cache}"]


def _injected(track_args: list[str], specs: list[str], root: Path, cache: str) -> Scenario:
  """The same command run once per spec, each run's spec making its write fail."""
  wd, codes, errors = root / "wd", [], []
  for spec in specs:
    proc = subprocess.run([sys.executable, "-c", DRIVER, spec, *_main(track_args, wd, cache)[2:]],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    codes.append(proc.returncode)
    errors.append(proc.stderr)
  return Scenario(codes, errors, wd, wd)


def _namespaced(track_args: list[str], sizes: list[str], root: Path, cache: str) -> Scenario:
  """The same command run once per size of a tmpfs holding its work directory; `cache` is the
  compilation cache's folder, or the size of a tmpfs of its own ("64k")."""
  mnt = root / "mnt"
  cache_size = cache if cache[:-1].isdigit() else ""
  cmd = [sys.executable, *_main(track_args, mnt / "wd", f"{mnt}-cache" if cache_size else cache)]
  proc = subprocess.run(["unshare", "-rm", "sh", "-c", NAMESPACE_SCRIPT, "sh", str(mnt),
                         str(root), " ".join(sizes), cache_size, *cmd],
                        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=400)
  assert proc.returncode == 0, proc.stderr
  codes = [int((root / f"rc{i}").read_text()) for i in range(len(sizes))]
  return Scenario(codes, [(root / f"err{i}").read_text() for i in range(len(sizes))],
                  root / "wd", mnt / "wd")


def _namespaces_allowed(tmp: Path) -> bool:
  """Whether this machine lets an unprivileged user mount a tmpfs in a namespace of its own."""
  try:
    return subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {tmp}"],
                          capture_output=True, timeout=30).returncode == 0
  except (OSError, subprocess.TimeoutExpired):
    return False


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory):
  """Every scenario's Future (None for one that needs what this machine lacks), started two at
  a time. Each track has one run whose training went uninterrupted ("<track> alone")."""
  tmp = tmp_path_factory.mktemp("disk_full")
  cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(tmp / "cache")
  namespaces = _namespaces_allowed(tmp_path_factory.mktemp("probe"))
  jobs = {
      # The second (last) checkpoint fails; resumed from the first, it finishes.
      "lm injected": (_injected, LM, ["checkpoint:1", ""], cache),
      # The compilation cache on a tmpfs of 64k fills at every run. The work directory's
      # tmpfs: 48k fails at the first checkpoint, so the next run trains from scratch, left
      # alone; 240k takes that training (about 150k) and the report's tables, not both figures
      # (160k); 64m takes it all.
      "synthetic tmpfs": (_namespaced, SYNTHETIC_ENDS, ["48k", "240k", "64m"], "64k"),
      # A metrics.jsonl append fails mid-run; resumed, a figure; then it finishes.
      "synthetic injected": (_injected, SYNTHETIC,
                             ["metrics.jsonl:3", "learning_curves.png:0", ""], cache),
      # The first checkpoint fails; none left to resume from, the next run trains from scratch.
      "lm tmpfs": (_namespaced, LM, ["300k", "64m"], cache),
      # Runs left alone, where the tmpfs scenarios (which hold one each) cannot run.
      "synthetic alone": (_injected, SYNTHETIC, [""], cache),
      "lm alone": (_injected, LM, [""], cache),
  }
  needs = {"synthetic tmpfs": namespaces, "lm tmpfs": namespaces,
           "synthetic alone": not namespaces, "lm alone": not namespaces}
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
  futures = {name: pool.submit(fn, args, runs, tmp / name.replace(" ", "_"), c)
             if needs.get(name, True) else None for name, (fn, args, runs, c) in jobs.items()}
  yield futures
  pool.shutdown(cancel_futures=True)


def _scenario(scenarios, name: str) -> Scenario:
  if scenarios[name] is None:
    pytest.skip("this machine allows no user and mount namespace (unshare -rm) for a tmpfs")
  return scenarios[name].result()


def _alone(scenarios, track: str) -> Scenario:
  """A run of `track` whose training went uninterrupted."""
  name = f"{track} tmpfs" if scenarios[f"{track} tmpfs"] is not None else f"{track} alone"
  s = scenarios[name].result()
  assert s.codes[-1] == 0 and "resuming" not in "".join(s.errors), s.errors[-1][-3000:]
  return s


def _records(wd: Path, track: str) -> dict[tuple, dict]:
  """The records of metrics.jsonl as a resumed run reads them, without the time fields."""
  return {(r[KEYS[track][0]], r[KEYS[track][1]]): {k: v for k, v in r.items()
                                                   if not TIME_FIELD.search(k)}
          for r in workdir.read_metrics(wd, KEYS[track])}


def _assert_one_line(error: str, code: int, named: Path, where: str) -> None:
  """The run failed with one line naming `where` in its work directory."""
  lines = [ln for ln in error.splitlines() if "no space left" in ln]
  assert code == 1 and len(lines) == 1 and "Traceback" not in error, (code, error[-3000:])
  assert lines[0].startswith(f"error: cannot write {named / where}"), lines[0]
  assert re.search(r"no space left on the device \(.*free on .+\); free some space and run "
                   "the same command again to resume$", lines[0]), lines[0]


def _assert_resumed(s: Scenario, track: str, alone: Scenario) -> None:
  """The last run finished, and its work directory holds what the run left alone holds."""
  assert s.codes[-1] == 0, s.errors[-1][-3000:]
  assert (s.wd / "summary.md").is_file()
  for line in (s.wd / "metrics.jsonl").read_text().splitlines():
    json.loads(line)  # no line cut by the full disk
  assert _records(s.wd, track) == _records(alone.wd, track)


def test_synthetic_metrics_append_on_a_full_disk_is_one_line(scenarios):
  s = _scenario(scenarios, "synthetic injected")
  _assert_one_line(s.errors[0], s.codes[0], s.named, "metrics.jsonl")


def test_synthetic_figure_on_a_full_disk_is_one_line(scenarios):
  s = _scenario(scenarios, "synthetic injected")
  assert "resuming from the checkpoint" in s.errors[1]
  _assert_one_line(s.errors[1], s.codes[1], s.named, "figures/learning_curves.png")
  assert not list((s.wd / "figures").glob("*.tmp"))
  assert "resuming" not in s.errors[2]  # training was done: only the report ran again


def test_synthetic_resumes_after_full_disks_to_the_records_of_a_run_left_alone(scenarios):
  _assert_resumed(_scenario(scenarios, "synthetic injected"), "synthetic",
                  _alone(scenarios, "synthetic"))


def test_lm_checkpoint_on_a_full_disk_is_one_line(scenarios):
  s = _scenario(scenarios, "lm injected")
  _assert_one_line(s.errors[0], s.codes[0], s.named, "checkpoints")


def test_lm_resumes_after_a_full_disk_to_the_records_of_a_run_left_alone(scenarios):
  s = _scenario(scenarios, "lm injected")
  assert "resuming from the checkpoint at step 25" in s.errors[1]
  _assert_resumed(s, "lm", _alone(scenarios, "lm"))


def test_synthetic_tmpfs_checkpoint_on_a_full_disk_is_one_line(scenarios):
  s = _scenario(scenarios, "synthetic tmpfs")
  _assert_one_line(s.errors[0], s.codes[0], s.named, "checkpoints")


def test_synthetic_tmpfs_figure_on_a_full_disk_is_one_line_and_the_same_command_finishes(
    scenarios):
  s = _scenario(scenarios, "synthetic tmpfs")
  _assert_one_line(s.errors[1], s.codes[1], s.named, "figures/")
  assert s.codes[2] == 0 and (s.wd / "summary.md").is_file(), s.errors[2][-3000:]
  assert not list((s.wd / "figures").glob("*.tmp"))


def test_a_full_compilation_cache_is_one_line_and_never_stops_a_run(scenarios):
  s = _scenario(scenarios, "synthetic tmpfs")
  for error in s.errors[:2]:  # each compiled its programs
    cache = [ln for ln in error.splitlines() if "compilation cache" in ln]
    assert len(cache) == 1 and "compiling without the cache" in cache[0], error[-3000:]


def test_lm_tmpfs_checkpoint_on_a_full_disk_is_one_line(scenarios):
  s = _scenario(scenarios, "lm tmpfs")
  _assert_one_line(s.errors[0], s.codes[0], s.named, "checkpoints")
  assert s.codes[1] == 0 and (s.wd / "summary.md").is_file(), s.errors[1][-3000:]
