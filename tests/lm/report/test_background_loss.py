"""Tests of rare_tasks/lm/report/background_loss.py: a row per control cell with a validation
loss, sizes in config order, and an unknown gap to the floor left empty."""

from rare_tasks.core.report import fmt
from rare_tasks.lm import grid
from rare_tasks.lm.report import background_loss
from tests.lm.report.conftest import injection_config, injection_records, injection_run


def test_a_row_per_control_cell_with_its_last_validation_loss():
  c = injection_config()
  c.grid.seed = (0, 1)
  cells = grid.cells(c)
  records = injection_records(c, cells)
  control = {(cell.size, cell.seed): cell.index for cs in cells.values() for cell in cs
             if cell.is_control}
  for r in records:
    if r["cell"] == control[("cpu_d64", 1)]:
      r.update(val_loss=2.5 + r["step"] / 100, val_gap=None)
  records = [r for r in records if r["cell"] != control[("cpu_d16", 1)]]  # not evaluated yet
  lines = background_loss.section(injection_run(c, records=records)).lines
  assert lines[0] == "## Background text (control cells, last step)"
  assert lines[4:] == [f"| cpu_d16 | 0 | {fmt(3.0)} | {fmt(1.0)} |",
                       f"| cpu_d64 | 0 | {fmt(3.0)} | {fmt(1.0)} |",
                       f"| cpu_d64 | 1 | {fmt(2.8)} |  |", ""]
