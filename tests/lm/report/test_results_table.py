"""Tests of rare_tasks/lm/report/results_table.py: results rows say what each cell learned and
when, unfinished cells are left out, and results.csv is written with its pointer line."""

from rare_tasks.core import tables
from rare_tasks.lm import grid
from rare_tasks.lm.report import results_table
from tests.lm.report.conftest import INFO, injection_config, injection_records, injection_run


def test_result_rows_say_what_each_cell_learned_and_when():
  c = injection_config()
  cells = grid.cells(c)
  rows = results_table.result_rows(c, INFO, cells, injection_records(c, cells))
  assert len(rows) == 2 * (3 + 1)
  by = {(r["size"], r["frequency"]): r for r in rows}
  assert by[("cpu_d64", 0.004)]["learned"] and not by[("cpu_d16", 0.004)]["learned"]
  assert by[("cpu_d64", 0.004)]["first_learned_step"] == 20
  assert by[("cpu_d16", 0.001)]["first_learned_step"] == ""
  assert not any(r["generalised"] for r in rows)  # test accuracy is half the train's
  assert by[("cpu_d16", 0.0)]["params"] == 100 and by[("cpu_d16", 0.0)]["gap"] == 1


def test_a_cell_without_its_final_record_is_left_out():
  c = injection_config()
  cells = grid.cells(c)
  unfinished = cells["cpu_d64"][0]
  records = [r for r in injection_records(c, cells)
             if not (r["cell"] == unfinished.index and r["step"] == 30)]
  rows = results_table.result_rows(c, INFO, cells, records)
  assert len(rows) == 2 * (3 + 1) - 1
  assert (unfinished.frequency, unfinished.gap) not in {
      (r["frequency"], r["gap"]) for r in rows if r["size"] == "cpu_d64"}


def test_the_section_writes_results_csv_and_points_to_it(tmp_path):
  run = injection_run(wd=tmp_path)
  section = results_table.section(run)
  rows = tables.read_csv(tmp_path / results_table.RESULTS_FILE)
  assert tuple(rows[0]) == results_table.COLUMNS and len(rows) == len(run.rows) == 8
  assert rows[0]["learned"] in ("True", "False")
  assert section.lines[0].startswith("Per cell and task: [results.csv](results.csv)")
  assert section.files == ("results.csv",)
