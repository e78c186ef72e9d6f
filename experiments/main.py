"""Runs a study.

  python -m experiments.main --config=configs/width_by_frequency.py --workdir=DIR
  python -m experiments.main --config=configs/lm_pretrain.py --clear_cache   # then exits

Every mistake in a flag, the config or the work directory is one line on stderr and exit code 2.
A run that cannot go on (a full disk, every model diverged) is one line and exit code 1; one
stopped by SIGINT or SIGTERM writes a checkpoint and exits with 128 + the signal's number, and
the same command resumes it.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from rare_tasks import studies
from rare_tasks.core import command_line, compilation_cache, disk, interrupts, mesh
from rare_tasks.core.config import ConfigError
from rare_tasks.core.report import every_model_diverged
from rare_tasks.core.workdir import WorkdirError, is_writer

DEFAULT_CONFIG = "configs/width_by_frequency.py"
# No default here: config_flags would load it, and apply the overrides, at this line; parse()
# gives it instead, so that a mistake in them is one line too.
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, f"Study config file, optionally with :preset (default: {DEFAULT_CONFIG}).")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/width_by_frequency",
                               "Work directory: config, metrics, results, figures, checkpoints.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Delete a work directory that holds a different config.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "On CPU, the number of JAX devices the ensembles are sharded over "
    "(0: one per core). Accelerators are not affected.", lower_bound=0)
_CLEAR_CACHE = flags.DEFINE_bool(
    "clear_cache", False, "Delete the language models' real-text dataset cache (the config's "
    "data.cache_dir, default ~/.cache/rare_tasks), print what it held, and exit.")
_COMPILATION_CACHE = flags.DEFINE_bool(
    "compilation_cache", True, "Keep compiled programs on disk and reuse them in later runs "
    "(JAX's persistent compilation cache); --nocompilation_cache compiles everything afresh.")
_COMPILATION_CACHE_DIR = flags.DEFINE_string(
    "compilation_cache_dir", "", "Folder of the compilation cache (default "
    "$XDG_CACHE_HOME/rare_tasks/compiled, else ~/.cache/rare_tasks/compiled).")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "One of several processes (jax.distributed.initialize): on TPU "
    "slices, SLURM, MPI and Kubernetes the rest is detected; elsewhere give the three flags "
    "below. Process 0 writes the work directory.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (with --distributed).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes (with --distributed).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process (with --distributed).")


def _fail(error: Exception | str, code: int = 2) -> None:
  print(f"error: {error}", file=sys.stderr)
  sys.exit(code)


def parse(argv):
  try:
    return command_line.parse_flags(argv, default=DEFAULT_CONFIG, aliases=studies.aliases_of)
  except ConfigError as e:
    _fail(e)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
  if _CLEAR_CACHE.value:
    from rare_tasks.lm.data import cache as text_cache  # only here: a synthetic run skips it

    data = _CONFIG.value.get("data") or {}
    root = text_cache.root_of(data.get("cache_dir", ""))
    print(f"cleared {root}: {text_cache.clear(root) / 1e6:.1f} MB freed")
    return
  mesh.use_cpu_cores(_CPU_DEVICES.value)
  if _COMPILATION_CACHE.value:
    compilation_cache.enable(_COMPILATION_CACHE_DIR.value)
  else:
    compilation_cache.disable()
  if _DISTRIBUTED.value:
    mesh.start_processes(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  interrupts.install()
  try:
    report = studies.run(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)
  except (ConfigError, WorkdirError) as e:
    _fail(e)
  except interrupts.Interrupted as e:
    _fail(e, e.exit_code)
  except Exception as e:  # a full disk, wherever it struck; or a directory gone or read-only
    if isinstance(e, disk.DiskFull):
      _fail(e, 1)
    path = getattr(e, "filename", None) or _WORKDIR.value
    if disk.no_space(e):
      _fail(disk.DiskFull(path, disk.free_bytes(path)), 1)
    if not isinstance(e, OSError):
      raise
    _fail(f"cannot write {path}: {e.strerror or e}", 1)
  s = report.summary
  if every_model_diverged(s):
    _fail(f"every model diverged ({s['models_diverged']} of {s['models_run']}); the report "
          f"lists them: {report.workdir}/summary.md", 1)
  if is_writer():  # process 0 of a multi-process run
    print(f"{report.workdir}/summary.md: {s['headline']}; wall {report.wall_s:.1f} s")


if __name__ == "__main__":
  app.run(main, flags_parser=parse)
