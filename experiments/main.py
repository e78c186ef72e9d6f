"""Runs a study.

  python -m experiments.main --config=configs/width_by_frequency.py --workdir=DIR
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from rare_tasks import sharding, studies
from rare_tasks.config_schema import ConfigError
from rare_tasks.workdir import WorkdirError

_CONFIG = config_flags.DEFINE_config_file("config", "configs/width_by_frequency.py",
                                          "Study config file, optionally with :preset.")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/width_by_frequency",
                               "Work directory: config, metrics, results, figures, checkpoints.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Delete a work directory that holds a different config.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "On CPU, the number of JAX devices the ensembles are sharded over "
    "(0: one per core). Accelerators are not affected.", lower_bound=0)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
  sharding.use_cpu_cores(_CPU_DEVICES.value)
  try:
    report = studies.run(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)
  except (ConfigError, WorkdirError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  s = report.summary
  print(f"{report.workdir}/summary.md: {s['headline']}; wall {report.wall_s:.1f} s")


if __name__ == "__main__":
  app.run(main)
