"""Hard kills at random moments: does a study that is SIGKILLed again and again, and resumed each
time by the same command, end bit-identical to the same study run once without interruption?

  python -m benchmarks.kill_resume                       # both smoke studies, 10 kills each
  python -m benchmarks.kill_resume --studies=lm_pretrain --kills=3 --seed=1 --keep

Per study (configs/lm_pretrain.py:smoke, configs/lm_size_by_frequency.py:smoke), in fresh
temporary work directories, every run being `python -m experiments.main --config=...
--workdir=... --config.checkpoint_interval_s=0` (a checkpoint at every evaluation, so that a
resume has a checkpoint to start from; the field is not part of the run's identity), all sharing
one compilation cache of their own:
  1. a control run, uninterrupted (it also fills the compilation cache, so that the runs after
     it start up alike), then the reference run, uninterrupted, timed and watched: when it has
     written config.json (start-up done), when each checkpoint appears, when it exits;
  2. in a third work directory the same command again and again, each invocation SIGKILLed at a
     moment drawn uniformly (numpy Generator seeded by --seed) from what the reference shows is
     left of the run: from the end of its start-up to its exit, that end moved earlier by the
     reference's training that the checkpoints the invocation starts from spare it (from the
     reference's first checkpoint to the one resumed from), cut to the wall time of the latest
     invocation that ran to its end in that directory, and so long at least as the reference's
     report (its last checkpoint to its exit). A moment past a checkpoint the invocation writes
     itself is kept as the time after that checkpoint (the kill waits for the invocation to
     write it), so that a slower or faster machine than the reference's still has its kills
     land where they were drawn: in the invocation's own restore, compilation, training,
     checkpoint writes and report; once the study has finished, in a finished study's start-up
     and report. Checkpoint writes last a tenth of a second each, so every third kill, while a
     checkpoint is left to write, waits from its moment for the next checkpoint write and kills
     inside it. An invocation that ends before its kill is a completed resume, not a kill.
     After --kills kills, a last invocation runs to its end;
  3. compares the killed-and-resumed directory with the reference: every record of every
     JSON-lines file (rare_tasks.core.workdir.read_metrics with the study's key), every CSV
     table, config.json and run.json, and every array of the latest checkpoint of each program
     (restored as numpy with orbax), bit for bit. Fields that measure time (tokens_per_s,
     model_tokens_per_s: those in which the control and the reference differ; any name matching
     TIME_FIELD) are left out. The control against the reference is the check that the study
     is deterministic at all.
Each kill is classed by the work directory it left (`phase`): before any checkpoint, between
checkpoints (a resume's start-up, restore or training), checkpoint write (a temporary checkpoint
folder or file appeared), after the last checkpoint (every program at its last step), or report
writing (after it, with a report file written by the killed invocation). Prints the figures per
study; writes them, the machine and the command as JSON to --out (default
benchmarks/results/kill_resume.json). --window=training draws the moments from the reference's
first checkpoint to its last instead, its end moved earlier alike (tests/faults/ does). About 5
minutes on a 2-core CPU with the defaults.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import timing

RESULTS = timing.REPO / "benchmarks" / "results" / "kill_resume.json"
STUDIES = {"lm_pretrain": "configs/lm_pretrain.py:smoke",
           "lm_size_by_frequency": "configs/lm_size_by_frequency.py:smoke"}
# Fields and columns that measure time; found by diffing two uninterrupted runs (tokens_per_s,
# model_tokens_per_s), with the names a wall or elapsed time would have.
TIME_FIELD = re.compile(r"per_s$|wall|elapsed|seconds|duration|_time$|^time")
POLL_S = 0.02
KILLED = -signal.SIGKILL
# Where to draw the kill moments in the reference run: from its start-up's end ("run") or its
# first checkpoint ("training") to its exit or its last checkpoint.
WINDOWS = ("run", "training")

Difference = tuple[str, str, Any, Any]  # where, field, in the reference, in the other


def metrics_key(study: str) -> tuple[str, str]:
  """The key of the study's metrics.jsonl records (one record per model and step)."""
  from rare_tasks.lm import grid_study, pretrain  # the study modules hold them

  return {"lm_pretrain": pretrain.METRICS_KEY,
          "lm_size_by_frequency": grid_study.METRICS_KEY}[study]


def command(config: str, wd: Path, cache: Path, cpu_devices: int,
            checkpoint_interval_s: float) -> list[str]:
  return [sys.executable, "-m", "experiments.main", f"--config={config}", f"--workdir={wd}",
          f"--config.checkpoint_interval_s={checkpoint_interval_s:g}",
          f"--compilation_cache_dir={cache}", f"--cpu_devices={cpu_devices}"]


def child_env() -> dict[str, str]:
  """The environment of the runs: the repository on PYTHONPATH, and no device count forced
  through XLA_FLAGS (the test session's), so that --cpu_devices decides."""
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if "xla_force_host_platform_device_count" not in f]
  return dict(os.environ, PYTHONPATH=str(timing.REPO), XLA_FLAGS=" ".join(flags))


# -- The work directory as a run leaves it ----------------------------------------------------

def program_folders(wd: Path) -> list[Path]:
  """The folders that may hold a program's checkpoint steps: checkpoints/ itself (one program)
  and its named subfolders (one per program)."""
  root = wd / "checkpoints"
  return [root, *(p for p in _entries(root) if not p.name.isdigit() and "tmp" not in p.name
                  and not p.name.endswith(".damaged") and p.is_dir())]


def checkpoint_dirs(wd: Path) -> list[str]:
  """The programs' checkpoint folders (relative to wd), those that hold steps."""
  return sorted(str(p.relative_to(wd)) for p in program_folders(wd) if steps_of(p))


def steps_of(folder: Path) -> list[int]:
  """The committed steps of a checkpoint folder (orbax renames a step's folder when done)."""
  return sorted(int(p.name) for p in _entries(folder) if p.name.isdigit() and p.is_dir())


def checkpoint_state(wd: Path) -> tuple[dict[str, int], set[str]]:
  """Each checkpoint folder's latest committed step, and what is being written under
  checkpoints/: its temporary folders and files, each with its modification time (a step
  written again after a kill reuses the name)."""
  latest, writing = {}, set()
  for folder in program_folders(wd):
    steps = steps_of(folder)
    if steps:
      latest[str(folder.relative_to(wd))] = steps[-1]
    for p in _entries(folder):
      if "tmp" in p.name:
        try:
          writing.add(f"{p.relative_to(wd)}@{p.stat().st_mtime_ns}")
        except FileNotFoundError:  # renamed or removed since listed: the write went on
          pass
  return latest, writing


def _entries(folder: Path) -> list[Path]:
  """The folder's entries; none when it does not exist (or no longer: a running study may
  delete it while it is listed)."""
  try:
    return list(folder.iterdir())
  except (FileNotFoundError, NotADirectoryError):
    return []


def phase(wd: Path, writing_before: set[str], finals: dict[str, int], since: float) -> str:
  """What a kill interrupted, from the work directory it left (`since`: the invocation's
  launch, time.time()): a checkpoint write (a temporary checkpoint folder or file appeared),
  before any checkpoint, between checkpoints (a resume's start-up, restore or training), after
  the last checkpoint, or report writing (after it, a report file was written since)."""
  latest, writing = checkpoint_state(wd)
  if writing - writing_before:
    return "checkpoint write"
  if not latest:
    return "before any checkpoint"
  if any(latest.get(p) != step for p, step in finals.items()):
    return "between checkpoints"
  return "report writing" if _report_written(wd, since) else "after the last checkpoint"


def _report_written(wd: Path, since: float) -> bool:
  """Whether a report file (not the checkpoints, the records, config.json, run.json, written
  at the start, or the lock) was written, or is being written, since `since`."""
  for p in wd.rglob("*"):
    rel = p.relative_to(wd)
    if (rel.parts[0] == "checkpoints" or p.name.startswith(".") or p.suffix == ".jsonl"
        or str(rel) in ("config.json", "run.json")):
      continue
    try:
      if p.is_file() and (p.name.endswith(".tmp") or p.stat().st_mtime >= since):
        return True
    except FileNotFoundError:
      continue
  return False


# -- Running, watching and killing ------------------------------------------------------------

@dataclasses.dataclass
class Kill:
  """When to kill an invocation: `after_s` seconds after its launch, or after it has written
  the checkpoint `anchor` (folder, step); with `in_write` (what was being written before), not
  until it is seen writing a checkpoint from then on."""
  after_s: float
  anchor: tuple[str, int] | None = None
  in_write: set[str] | None = None


@dataclasses.dataclass
class Invocation:
  """One run of the command: its exit status (-9 when killed), wall time, stderr file and
  launch (time.time()); whether this benchmark killed it."""
  rc: int
  wall_s: float
  log: Path
  started: float
  killed: bool = False

  def tail(self, lines: int = 15) -> str:
    return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclasses.dataclass
class Timeline:
  """When the uninterrupted reference did what, in seconds from its launch."""
  wall_s: float
  prepared_s: float  # config.json written: start-up over
  checkpoints: list[tuple[str, int, float]]  # each checkpoint (folder, step) at its first sighting

  @property
  def report_s(self) -> float:
    """From its last checkpoint to its exit: its report."""
    return self.wall_s - (self.checkpoints[-1][2] if self.checkpoints else self.prepared_s)

  def resumed_at(self, latest: dict[str, int]) -> float | None:
    """When the reference wrote the last of the checkpoints `latest` (None: none of them)."""
    times = [t for folder, step, t in self.checkpoints if latest.get(folder) == step]
    return max(times) if times else None

  def shift(self, latest: dict[str, int]) -> float:
    """The reference's seconds of training that the checkpoints `latest` spare a resume."""
    resumed = self.resumed_at(latest)
    return 0.0 if resumed is None else resumed - self.checkpoints[0][2]

  def window(self, latest: dict[str, int], name: str, longest_s: float) -> tuple[float, float]:
    """Where to draw the kill moment of an invocation that starts from the checkpoints
    `latest`: the reference's window ("run": its start-up's end to its exit; "training": its
    first checkpoint to its last) moved earlier by the training they spare, cut to `longest_s`
    (and no shorter than the report)."""
    shift = self.shift(latest)
    lo, hi = self.prepared_s, self.wall_s - shift
    if name == "training" and self.checkpoints[-1][2] - shift > self.checkpoints[0][2]:
      lo, hi = self.checkpoints[0][2], self.checkpoints[-1][2] - shift
    hi = max(min(hi, longest_s), 0.0)
    return max(min(lo, hi - self.report_s), 0.0), hi

  def plan(self, latest: dict[str, int], window: str, longest_s: float,
           rng: np.random.Generator) -> tuple[Kill, float, tuple[float, float]]:
    """The kill of an invocation that starts from the checkpoints `latest`, at a moment drawn
    uniformly from `window`, anchored on the last checkpoint the invocation will have written
    by then as the reference wrote it, if any. -> the kill, the moment, the window."""
    resumed, shift = self.resumed_at(latest), self.shift(latest)
    lo, hi = self.window(latest, window, longest_s)
    moment = float(rng.uniform(lo, hi))
    own = [(folder, step, t - shift) for folder, step, t in self.checkpoints
           if (resumed is None or t > resumed) and t - shift <= moment]
    if not own:
      return Kill(moment), moment, (lo, hi)
    folder, step, t = own[-1]
    return Kill(moment - t, anchor=(folder, step)), moment, (lo, hi)


def launch(cmd: list[str], wd: Path, log: Path, kill: Kill | None = None,
           timeline: Timeline | None = None) -> Invocation:
  """Runs cmd, SIGKILLs it as `kill` says if it still runs then; with `timeline`, fills it in
  by watching wd."""
  seen: set[tuple[str, int]] = set()
  with open(log, "w") as err:
    start, started = time.perf_counter(), time.time()
    proc = subprocess.Popen(cmd, cwd=timing.REPO, env=child_env(), stdout=err, stderr=err)
    anchored = 0.0 if kill is None or kill.anchor is None else None
    killed = False
    while proc.poll() is None:
      now = time.perf_counter() - start
      if anchored is None and kill.anchor[1] in steps_of(wd / kill.anchor[0]):
        anchored = now
      due = anchored is not None and kill is not None and now >= anchored + kill.after_s
      if due and (kill.in_write is None or checkpoint_state(wd)[1] - kill.in_write):
        proc.send_signal(signal.SIGKILL)
        killed = True
        break
      if timeline is not None:
        _watch(wd, now, seen, timeline)
      time.sleep(POLL_S / 4 if due else POLL_S)
    rc = proc.wait()
  wall = time.perf_counter() - start
  if timeline is not None:
    timeline.wall_s = wall
  return Invocation(rc, wall, log, started, killed and rc == KILLED)


def _watch(wd: Path, now: float, seen: set[tuple[str, int]], timeline: Timeline) -> None:
  if timeline.prepared_s < 0 and (wd / "config.json").exists():
    timeline.prepared_s = now
  latest, _ = checkpoint_state(wd)
  for folder, step in latest.items():
    if (folder, step) not in seen:
      seen.add((folder, step))
      timeline.checkpoints.append((folder, step, now))


def reference(cmd: list[str], wd: Path, log: Path) -> tuple[Invocation, Timeline]:
  """The uninterrupted run, watched."""
  timeline = Timeline(wall_s=0.0, prepared_s=-1.0, checkpoints=[])
  run = launch(cmd, wd, log, timeline=timeline)
  if run.rc != 0 or not timeline.checkpoints:
    raise RuntimeError(f"the uninterrupted run failed (exit {run.rc}):\n{run.tail()}")
  timeline.prepared_s = max(timeline.prepared_s, 0.0)
  return run, timeline


def kill_and_resume(cmd: list[str], wd: Path, logs: Path, timeline: Timeline,
                    finals: dict[str, int], kills: int, rng: np.random.Generator,
                    window: str = "run") -> dict[str, Any]:
  """Runs cmd in wd, SIGKILLing it at drawn moments until `kills` kills are made, then once to
  its end; finals: each checkpoint folder's last step. -> the kills (moment, phase, checkpoints
  then), invocations, resumes, the failure if an invocation failed."""
  longest = timeline.wall_s
  made: list[dict[str, Any]] = []
  runs: list[Invocation] = []
  resumes = finished_early = 0
  failure = None
  while len(made) < kills and len(runs) < 4 * kills + 10:
    before, writing = checkpoint_state(wd)
    resumes += bool(before)
    kill, moment, drawn_in = timeline.plan(before, window, longest, rng)
    # Every third kill waits for a checkpoint write (while any is left to write).
    at_write = len(made) % 3 == 2 and before != finals
    kill.in_write = writing if at_write else None
    run = launch(cmd, wd, logs / f"{len(runs):02d}.log", kill)
    runs.append(run)
    if run.killed:
      made.append({"invocation": len(runs) - 1, "window_s": [round(x, 3) for x in drawn_in],
                   "moment_s": round(moment, 3), "anchor": kill.anchor,
                   "killed_at_s": round(run.wall_s, 3),
                   "trigger": "checkpoint write" if at_write else "moment",
                   "phase": phase(wd, writing, finals, run.started),
                   "checkpoints": checkpoint_state(wd)[0]})
    elif run.rc == 0:
      finished_early += 1
      longest = run.wall_s
    else:
      failure = {"invocation": len(runs) - 1, "rc": run.rc, "stderr": run.tail()}
      break
  if failure is None:
    resumes += bool(checkpoint_state(wd)[0])
    runs.append(launch(cmd, wd, logs / f"{len(runs):02d}.log"))
    if runs[-1].rc != 0:
      failure = {"invocation": len(runs) - 1, "rc": runs[-1].rc, "stderr": runs[-1].tail()}
  return {"kill_list": made, "invocations": len(runs), "resumes": resumes,
          "finished_before_kill": finished_early, "failure": failure,
          "invocation_walls_s": [round(r.wall_s, 2) for r in runs],
          "killed_total_wall_s": sum(r.wall_s for r in runs)}


# -- Comparing two finished work directories --------------------------------------------------

def record_differences(a: Path, b: Path, key: tuple[str, str]) -> tuple[list[Difference], int]:
  """Every field that differs between the records of a's and b's JSON-lines files (read as a
  resumed run reads them: a rewrite wins, a cut line is skipped); and the records compared."""
  from rare_tasks.core import workdir

  diffs: list[Difference] = []
  count = 0
  for name in sorted({p.name for d in (a, b) for p in d.glob("*.jsonl")}):
    ra = {(r.get(key[0]), r.get(key[1])): r for r in workdir.read_metrics(a, key, name)}
    rb = {(r.get(key[0]), r.get(key[1])): r for r in workdir.read_metrics(b, key, name)}
    for k in sorted(ra.keys() | rb.keys(), key=repr):
      where = f"{name} ({key[0]}={k[0]}, {key[1]}={k[1]})"
      if k not in ra or k not in rb:
        diffs.append((where, "<record>", k in ra, k in rb))
        continue
      count += 1
      for field in sorted(ra[k].keys() | rb[k].keys()):
        va, vb = ra[k].get(field, "<absent>"), rb[k].get(field, "<absent>")
        if json.dumps(va) != json.dumps(vb):  # floats by repr: exact, NaN included
          diffs.append((where, field, va, vb))
  return diffs, count


def _files(wd: Path, pattern: str) -> set[str]:
  return {str(p.relative_to(wd)) for p in wd.rglob(pattern)
          if "checkpoints" not in p.relative_to(wd).parts}


def table_differences(a: Path, b: Path) -> tuple[list[Difference], int]:
  """Every cell that differs between a's and b's CSV tables (as text); and the rows
  compared."""
  diffs: list[Difference] = []
  count = 0
  for rel in sorted(_files(a, "*.csv") | _files(b, "*.csv")):
    if not (a / rel).exists() or not (b / rel).exists():
      diffs.append((rel, "<file>", (a / rel).exists(), (b / rel).exists()))
      continue
    ta, tb = (list(csv.reader((d / rel).open(newline=""))) for d in (a, b))
    if not ta or not tb or ta[0] != tb[0] or len(ta) != len(tb):
      diffs.append((rel, "<columns or rows>", ta[:1] + [len(ta)], tb[:1] + [len(tb)]))
      continue
    for i, (row_a, row_b) in enumerate(zip(ta[1:], tb[1:]), start=1):
      count += 1
      diffs += [(f"{rel} row {i}", column, x, y)
                for column, x, y in zip(ta[0], row_a, row_b) if x != y]
  return diffs, count


def json_differences(a: Path, b: Path) -> list[Difference]:
  """Every value that differs between a's and b's top-level JSON files (config.json,
  run.json)."""
  diffs: list[Difference] = []
  for name in sorted({p.name for d in (a, b) for p in d.glob("*.json")}):
    va, vb = (json.loads((d / name).read_text()) if (d / name).exists() else "<absent>"
              for d in (a, b))
    _tree_differences(name, "", va, vb, diffs)
  return diffs


def _tree_differences(where: str, path: str, va: Any, vb: Any, out: list[Difference]) -> None:
  if isinstance(va, dict) and isinstance(vb, dict):
    for k in sorted(va.keys() | vb.keys()):
      _tree_differences(where, f"{path}.{k}" if path else k, va.get(k, "<absent>"),
                        vb.get(k, "<absent>"), out)
  elif json.dumps(va) != json.dumps(vb):
    out.append((where, path, va, vb))


def restore_latest(folder: Path) -> tuple[int, dict[str, np.ndarray]]:
  """The latest committed step of a checkpoint folder and its arrays, restored as numpy with
  orbax (whatever devices wrote them), keyed by their tree path."""
  import jax
  import orbax.checkpoint as ocp
  from absl import logging

  logging.set_verbosity(logging.ERROR)  # orbax warns of a metadata file it does not need
  step = steps_of(folder)[-1]
  item = folder.absolute() / str(step) / "state"
  with ocp.StandardCheckpointer() as checkpointer:
    metadata = checkpointer.metadata(item)
    tree = getattr(metadata, "item_metadata", metadata)
    like = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)
    restored = checkpointer.restore(item, like)
  leaves = jax.tree_util.tree_leaves_with_path(restored)
  return step, {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}


def checkpoint_differences(a: Path, b: Path) -> tuple[list[Difference], int]:
  """Every array of the programs' latest checkpoints that differs between a and b in a bit
  (dtype, shape, bytes; np.array_equal too); and the arrays compared."""
  diffs: list[Difference] = []
  count = 0
  for rel in sorted(set(checkpoint_dirs(a)) | set(checkpoint_dirs(b))):
    if not steps_of(a / rel) or not steps_of(b / rel):
      diffs.append((rel, "<checkpoints>", steps_of(a / rel), steps_of(b / rel)))
      continue
    (sa, xa), (sb, xb) = restore_latest(a / rel), restore_latest(b / rel)
    if sa != sb or xa.keys() != xb.keys():
      diffs.append((rel, "<latest step, arrays>", (sa, sorted(xa)), (sb, sorted(xb))))
      continue
    for path in sorted(xa):
      count += 1
      u, v = xa[path], xb[path]
      same = (u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes()
              and np.array_equal(u, v, equal_nan=u.dtype.kind in "fc"))
      if not same:
        diffs.append((f"{rel}/{sa}", path, _summary(u, v), _summary(v, u)))
  return diffs, count


def _summary(u: np.ndarray, v: np.ndarray) -> str:
  if u.shape != v.shape or u.dtype != v.dtype:
    return f"{u.dtype}{list(u.shape)}"
  n = int(np.sum(u != v))
  if n == 0:
    return "equal values, different bits (signed zeros or NaN payloads)"
  return f"{n} of {u.size} values differ, the first {u[u != v].ravel()[0]!r}"


def compare(a: Path, b: Path, key: tuple[str, str]) -> dict[str, Any]:
  """a (the reference) against b: identical when no field but a time field differs."""
  records, n_records = record_differences(a, b, key)
  tables, n_rows = table_differences(a, b)
  arrays, n_arrays = checkpoint_differences(a, b)
  every = records + tables + json_differences(a, b) + arrays
  real = [d for d in every if not TIME_FIELD.search(d[1])]
  return {"identical": not real,
          "first_difference": None if not real else _describe(real[0]),
          "differences": len(real),
          "time_fields": sorted({d[1] for d in every if TIME_FIELD.search(d[1])}),
          "records": n_records, "table_rows": n_rows, "arrays": n_arrays}


def _describe(d: Difference) -> str:
  where, field, va, vb = d
  return f"{where}: {field}: reference {va!r}, this run {vb!r}"


# -- A study, and the command line -------------------------------------------------------------

def run_study(study: str, kills: int, seed: int, root: Path, window: str = "run",
              cpu_devices: int = 0, checkpoint_interval_s: float = 0.0) -> dict[str, Any]:
  """The whole measurement of one study in work directories under `root`."""
  config = STUDIES[study]
  cache, logs = root / "compiled", root / "logs"
  (logs / "killed").mkdir(parents=True, exist_ok=True)

  def cmd(name: str) -> list[str]:
    return command(config, root / name, cache, cpu_devices, checkpoint_interval_s)

  control = launch(cmd("control"), root / "control", logs / "control.log")
  if control.rc != 0:
    raise RuntimeError(f"the control run failed (exit {control.rc}):\n{control.tail()}")
  ref, timeline = reference(cmd("reference"), root / "reference", logs / "reference.log")
  finals = checkpoint_state(root / "reference")[0]
  rng = np.random.default_rng(seed)
  killed = kill_and_resume(cmd("killed"), root / "killed", logs / "killed", timeline, finals,
                           kills, rng, window)
  key = metrics_key(study)
  result = {"config": config, "command": " ".join(cmd("<workdir>")), "seed": seed,
            "window": window, "kills": len(killed["kill_list"]),
            "kills_before_any_checkpoint": sum(not k["checkpoints"]
                                               for k in killed["kill_list"]),
            "kills_by_phase": _counts(k["phase"] for k in killed["kill_list"]),
            "uninterrupted_wall_s": ref.wall_s, "control_wall_s": control.wall_s,
            "timeline": dataclasses.asdict(timeline), "final_steps": finals,
            "window_s": list(timeline.window({}, window, timeline.wall_s)), **killed}
  result["control"] = compare(root / "reference", root / "control", key)
  result["comparison"] = (compare(root / "reference", root / "killed", key)
                          if killed["failure"] is None else None)
  result["bit_identical"] = bool(result["comparison"] and result["comparison"]["identical"])
  result["first_difference"] = (result["comparison"] or {}).get("first_difference")
  return result


def _counts(items: Any) -> dict[str, int]:
  out: dict[str, int] = {}
  for item in items:
    out[item] = out.get(item, 0) + 1
  return out


def report(study: str, r: dict[str, Any]) -> str:
  """The figures of one study, as printed."""
  phases = ", ".join(f"{k} {v}" for k, v in sorted(r["kills_by_phase"].items()))
  lines = [f"{study} ({r['config']}, seed {r['seed']}, window {r['window']} "
           f"{r['window_s'][0]:.1f}-{r['window_s'][1]:.1f} s):",
           f"  kills {r['kills']} ({r['kills_before_any_checkpoint']} before any checkpoint; "
           f"{phases}); resumes {r['resumes']} in {r['invocations']} invocations "
           f"({r['finished_before_kill']} finished before their kill)"]
  if r["failure"] is not None:
    f = r["failure"]
    lines.append(f"  FAILED: invocation {f['invocation']} exited {f['rc']}:\n{f['stderr']}")
  else:
    same = "yes" if r["bit_identical"] else f"NO: {r['first_difference']}"
    lines.append(f"  bit-identical to the uninterrupted run: {same} ({r['comparison']['records']}"
                 f" records, {r['comparison']['table_rows']} table rows, "
                 f"{r['comparison']['arrays']} checkpoint arrays)")
  control = r["control"]
  lines.append(f"  control (two uninterrupted runs): "
               f"{'identical' if control['identical'] else control['first_difference']}; "
               f"time fields left out: {', '.join(control['time_fields']) or 'none'}")
  lines.append(f"  wall: uninterrupted {r['uninterrupted_wall_s']:.1f} s (control "
               f"{r['control_wall_s']:.1f} s, compiling), killed and resumed "
               f"{r['killed_total_wall_s']:.1f} s in all")
  return "\n".join(lines)


def machine(cpu_devices: int) -> dict[str, Any]:
  """Where it ran; device_count is the runs' (on CPU one per core unless --cpu_devices)."""
  import jax

  env = timing.environment(jax.devices()[0])
  if env["platform"] == "cpu":
    env["device_count"] = cpu_devices or os.cpu_count()
  return {"os": platform.platform(), "machine": platform.machine(), **env}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--studies", type=lambda s: s.split(","), default=list(STUDIES),
                      help=f"comma-separated, of {', '.join(STUDIES)}")
  parser.add_argument("--kills", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--window", choices=WINDOWS, default="run")
  parser.add_argument("--cpu_devices", type=int, default=0)
  parser.add_argument("--out", type=Path, default=RESULTS)
  parser.add_argument("--keep", action="store_true", help="keep the work directories")
  args = parser.parse_args()
  unknown = [s for s in args.studies if s not in STUDIES]
  if unknown:
    parser.error(f"unknown studies {unknown}; known: {list(STUDIES)}")
  results: dict[str, Any] = {"machine": machine(args.cpu_devices),
                             "command": " ".join(["python -m benchmarks.kill_resume",
                                                  *sys.argv[1:]]),
                             "kills": args.kills, "seed": args.seed, "studies": {}}
  ok = True
  for study in args.studies:
    root = Path(tempfile.mkdtemp(prefix=f"kill_resume_{study}_"))
    try:
      r = run_study(study, args.kills, args.seed, root, args.window, args.cpu_devices)
    finally:
      if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    r["workdirs"] = str(root) if args.keep else None
    results["studies"][study] = r
    ok &= r["bit_identical"]
    print(report(study, r) + (f"\n  work directories: {root}" if args.keep else ""), flush=True)
    timing.write_json(args.out, results)
  timing.write_json(args.out, results, final=True)
  sys.exit(0 if ok else 1)


if __name__ == "__main__":
  main()
