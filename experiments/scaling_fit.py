"""Fits L(N) = L0 + A N^-alpha to a finished grid run and draws the paper's figure 1 picture.

  python -m experiments.scaling_fit --workdir=DIR [--small_width=8 --large_width=128]

Writes DIR/scaling_fit.json and DIR/figures/scaling.png (rare_tasks.synthetic.report.scaling)
and prints the summary section. Flags not given keep the run's own config.scaling values.
"""

import sys

from absl import app, flags

from rare_tasks.core import disk
from rare_tasks.core.config import ConfigError
from rare_tasks.synthetic.report import scaling

_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory of a finished grid run.",
                               required=True)
_SMALL = flags.DEFINE_integer("small_width", 0, "Small width (0: the grid's narrowest).",
                              lower_bound=0)
_LARGE = flags.DEFINE_integer("large_width", 0, "Large width (0: the grid's widest).",
                              lower_bound=0)
_EPSILON = flags.DEFINE_float("epsilon", 0.05, "Gap above which a task needs model scaling.",
                              lower_bound=0.0)


def main(argv):
  del argv
  # Only the flags given override the run's own config.scaling.
  given = {flag.name: flag.value for flag in (_SMALL, _LARGE, _EPSILON)
           if flags.FLAGS[flag.name].present}
  try:
    lines = scaling.write_for_workdir(_WORKDIR.value, given)
  except disk.DiskFull as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except (FileNotFoundError, ValueError, ConfigError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
