"""Tests of rare_tasks/synthetic/training.py: group constants from the cells,
deferred metrics, a lost final record measured again, records that forward what the family
measures, and two processes of four devices training as one process of eight."""

import shutil

import jax
import numpy as np

from rare_tasks.core import traces, workdir
from rare_tasks.core.checkpoints import GroupCheckpoints
from rare_tasks.synthetic import grid_study, placement, training
from rare_tasks.synthetic.grid import expand, group_cells
from rare_tasks.synthetic.report.results import read_results
from rare_tasks.synthetic.tasks import task_of
from tests import processes
from tests.synthetic.conftest import mechanism_config, tiny_config


def test_group_constants_come_from_the_cells():
  c = tiny_config()
  c.injection.schedule = "bursts"
  c.grid.frequency = (1 / 32, 1 / 16)
  task = task_of(c)
  group = group_cells(expand(c, task))[0]
  consts = training.group_constants(task, group.cells)
  np.testing.assert_array_equal(consts["seeds"], [0, 1])
  np.testing.assert_array_equal(consts["mixture"],
                                np.float32([[cell.mixture for cell in row] for row in group.cells]))
  np.testing.assert_array_equal(consts["burst_size"], [[1, 2], [1, 2]])  # f x 1 x 32
  assert consts["stream"]["spectrum"].shape == (2, 4, 2)


def test_records_hold_the_cells_values_and_the_familys_finished_metrics(tmp_path):
  c = tiny_config()
  task = task_of(c)
  group = group_cells(expand(c, task))[1]
  run = training.GroupRun(c, group, task, placement.ensemble_mesh(jax.devices()[:3]))
  assert (run.s_pad, run.p_pad) != (group.num_streams, group.num_members)  # padded to 3
  records = run.records(0, None, run.evaluate(run.init()))
  assert [r["cell"] for r in records] == [cell.index for cell in group.flat_cells()]
  for r, cell in zip(records, group.flat_cells()):
    assert {k: r[k] for k in cell.record} == cell.record
    assert "encoder_map" not in r  # finished on the host into feature capture
    # Zero heads: the exact FVU is 1; the width-8 encoder captures part of every task.
    assert r["population_fvu"] == [1.0] * 4
    assert all(0 < x <= 1 for x in r["feature_capture"])


def test_metrics_deferred_between_checkpoints_give_the_same_results(reference, tmp_path):
  wd_ref, _ = reference
  c = tiny_config()
  c.checkpoint_interval_s = 1e9  # only the final checkpoint; metrics written a chunk late
  grid_study.run(c, tmp_path)
  steps = sorted({r["step"] for r in workdir.read_metrics(tmp_path) if r["cell"] == 5})
  assert steps == [0, 20, 40, 60]
  assert (tmp_path / "results.csv").read_text() == (wd_ref / "results.csv").read_text()


def test_lost_final_record_is_measured_again_from_the_checkpoint(reference, tmp_path):
  wd_ref, _ = reference
  shutil.copytree(wd_ref, tmp_path / "wd")
  wd = tmp_path / "wd"
  lines = (wd / "metrics.jsonl").read_text().splitlines()
  kept = [ln for ln in lines if not ('"cell": 6,' in ln and '"step": 60' in ln)]
  assert len(kept) == len(lines) - 1
  (wd / "metrics.jsonl").write_text("\n".join(kept) + "\n")
  (wd / "results.csv").unlink()
  report = grid_study.run(tiny_config(), wd)
  assert report.trained_steps == 0
  assert (wd / "results.csv").read_text() == (wd_ref / "results.csv").read_text()


def test_two_processes_of_four_devices_train_as_one_process_of_eight(mechanism_run, tmp_path):
  """The mechanism grid (two groups, checkpoints at every evaluation, the per-step rare trace)
  from the command line as two processes over loopback: process 0 alone writes the work
  directory, both save every checkpoint, and records, tables and checkpoints equal those of
  one process with 8 devices."""
  wd_ref, _ = mechanism_run
  config_file = tmp_path / "mechanism_config.py"  # its per-task betas have no flag syntax
  config_file.write_text("from tests.synthetic.conftest import mechanism_config as get_config\n")
  wd = tmp_path / "wd"
  procs = processes.start([f"--config={config_file}", f"--workdir={wd}"])
  outs = [p.communicate(timeout=240) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs[0][1][-3000:] + outs[1][1][-3000:]
  assert "summary.md" in outs[0][0] and "summary.md" not in outs[1][0]  # process 0 reports
  two, one = workdir.read_metrics(wd), workdir.read_metrics(wd_ref)
  assert [(r["cell"], r["step"]) for r in two] == [(r["cell"], r["step"]) for r in one]
  for column in ("fvu", "population_fvu", "feature_capture", "rare_overwrite"):
    np.testing.assert_allclose([r[column] for r in two], [r[column] for r in one], rtol=2e-5,
                               atol=2e-6)
  assert read_results(wd) == read_results(wd_ref)
  for name in ("allocation.csv", "retention.csv"):
    assert (wd / name).read_text() == (wd_ref / name).read_text()
  task = task_of(mechanism_config())
  for group in group_cells(expand(mechanism_config(), task)):
    run = training.GroupRun(mechanism_config(), group, task, placement.ensemble_mesh())
    saved = [GroupCheckpoints(d / training.CHECKPOINTS_DIR / group.name) for d in (wd, wd_ref)]
    assert [c.steps() for c in saved] == [[48, 32]] * 2
    jax.tree.map(np.testing.assert_array_equal, *[c.restore(run.host_like()) for c in saved])
    jax.tree.map(np.testing.assert_array_equal,
                 *[traces.read_group(d, group.name) for d in (wd, wd_ref)])
