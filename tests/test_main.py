"""Tests of experiments/main.py as a user runs it: errors, and a hard kill followed by a resume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rare_tasks.results_table import read_results

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--config=configs/width_by_frequency.py:smoke", "--config.train.steps=400",
         "--config.eval_every=50", "--config.checkpoint_interval_s=0",
         "--config.grid.rare_frequency=(0.03,0.2)"]
WIDTHS = "--config.grid.width=(2,8)"


def _main(*args, **kwargs):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.Popen([sys.executable, "-m", "experiments.main", *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_bad_value_exits_with_a_message_naming_field_value_and_rule(tmp_path):
  proc = _main(*SMALL, "--config.grid.width=(0,8)", f"--workdir={tmp_path / 'wd'}")
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 2
  assert "config.grid.width[0] = 0: allowed: an integer > 0" in err
  assert not (tmp_path / "wd").exists()


def test_an_axis_the_preset_does_not_sweep_can_be_swept_from_the_command_line(tmp_path):
  # The override reaches validation (a bad value is refused there, before any compute).
  proc = _main(*SMALL, "--config.grid.learning_rate=(1e-3,-1.0)", f"--workdir={tmp_path / 'wd'}")
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 2
  assert "config.grid.learning_rate[1] = -1.0: allowed: a finite number > 0" in err


def test_misspelt_override_is_refused_with_a_suggestion(tmp_path):
  proc = _main(*SMALL, WIDTHS, "--config.train.stpes=3", f"--workdir={tmp_path / 'wd'}")
  _, err = proc.communicate(timeout=120)
  assert proc.returncode != 0
  assert "stpes" in err and "steps" in err
  assert not (tmp_path / "wd").exists()


def test_hard_kill_then_same_command_resumes_to_the_same_results(tmp_path):
  killed, clean = tmp_path / "killed", tmp_path / "clean"
  proc = _main(*SMALL, WIDTHS, f"--workdir={killed}")
  # Kill as soon as the second group has a checkpoint, mid-run.
  deadline = time.time() + 240
  second = killed / "checkpoints" / "width8_identity_depth0"
  while time.time() < deadline and proc.poll() is None:
    if second.exists() and any(p.name.isdigit() for p in second.iterdir()):
      break
    time.sleep(0.05)
  assert proc.poll() is None, "the run ended before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed / "results.csv").exists()

  logs = {}
  for wd in (killed, clean):
    proc = _main(*SMALL, WIDTHS, f"--workdir={wd}")
    _, logs[wd] = proc.communicate(timeout=240)
    assert proc.returncode == 0, logs[wd]
  assert "width8_identity_depth0: resuming from the checkpoint" in logs[killed]
  assert "resuming" not in logs[clean]
  killed_rows, clean_rows = read_results(killed), read_results(clean)
  assert [r["cell"] for r in killed_rows] == [r["cell"] for r in clean_rows]
  for column in ("fvu", "population_fvu", "feature_capture"):
    np.testing.assert_allclose([float(r[column]) for r in killed_rows],
                               [float(r[column]) for r in clean_rows], rtol=1e-6)


def test_scaling_fit_command_names_what_is_missing(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-m", "experiments.scaling_fit", f"--workdir={tmp_path}"],
                       cwd=ROOT, env=env, capture_output=True, text=True)
  assert out.returncode == 2
  assert f"error: {tmp_path} holds no finished grid run (no config.json)" in out.stderr
