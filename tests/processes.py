"""Several processes of experiments.main joined over loopback, as on several hosts: what the
multi-process tests of both tracks share."""

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start(args: list[str], num_processes: int = 2, devices_each: int = 4) -> list[subprocess.Popen]:
  """`python -m experiments.main *args --distributed` as `num_processes` processes of
  `devices_each` CPU devices, process 0 the coordinator on a free port of localhost; their
  stdout and stderr piped as text."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_each}")
  with socket.socket() as s:  # a free port for the coordinator
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  return [subprocess.Popen(
      [sys.executable, "-m", "experiments.main", *args, "--distributed",
       f"--coordinator_address=localhost:{port}", f"--num_processes={num_processes}",
       f"--process_id={i}"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(num_processes)]
