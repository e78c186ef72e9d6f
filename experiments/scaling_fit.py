"""Fits L(N) = L0 + A N^-alpha to a finished grid run and draws the paper's figure 1 picture.

  python -m experiments.scaling_fit --workdir=DIR [--small_width=8 --large_width=128]

Writes DIR/scaling_fit.json and DIR/figures/scaling.png (rare_tasks.scaling_report).
"""

import sys

from absl import app, flags

from rare_tasks import scaling_report

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
  try:
    lines = scaling_report.write_for_workdir(_WORKDIR.value, {
        "small_width": _SMALL.value, "large_width": _LARGE.value, "epsilon": _EPSILON.value})
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
