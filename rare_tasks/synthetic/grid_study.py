"""The grid study (config.study = "grid"): train every cell of a width x frequency grid, measure
it, and report it beside the closed form.

The run, top to bottom:
  1. check the config (once) and expand the grid into cells and ensemble groups;
  2. open the work directory (or find this run's, to resume or re-report);
  3. predict every cell from the family's closed form, if it has one (predictions.json);
  4. train every group to the end (training.train_groups: resumes from checkpoints); with
     config.log.tensorboard, each cell's scalars go to tensorboard/<cell>/
     (rare_tasks.core.tensorboard);
  5. build results.csv from the final records of metrics.jsonl;
  6. write each report section that applies (SECTIONS) and summary.md from them.
A finished run invoked again retrains nothing and regenerates its report.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from pathlib import Path

import jax
import ml_collections

from rare_tasks.core import engine, tensorboard, workdir
from rare_tasks.core import report as reports
from rare_tasks.core.progress import log
from rare_tasks.synthetic import config as schema
from rare_tasks.synthetic import placement, training
from rare_tasks.synthetic.grid import expand, group_cells, run_names
from rare_tasks.synthetic.report import (
  agreement,
  allocation,
  interference,
  learning_order,
  overview,
  predictions,
  results,
  retention,
  scaling,
  tasks_learned,
)
from rare_tasks.synthetic.report.results_view import GridResults
from rare_tasks.synthetic.tasks import task_of

# The report's sections in summary.md order, each written when it applies to the run. The
# opening ones come first; the figures and tables they wrote are indexed after them.
OPENING = (overview, agreement, tasks_learned)
MEASUREMENTS = (allocation, interference, retention, learning_order, scaling)
SECTIONS = OPENING + MEASUREMENTS
# Everything a grid study writes into its work directory (--overwrite deletes these).
FILES = reports.declared_files(training.FILES, predictions.FILES, results.FILES,
                               (reports.SUMMARY_FILE, tensorboard.DIR),
                               *(s.FILES for s in SECTIONS))
# The config fields and values renamed since older work directories were written.
ALIASES = schema.ALIASES


def run(config: ml_collections.ConfigDict, workdir_path: str | Path, overwrite: bool = False,
        devices: Sequence[jax.Device] | None = None,
        callbacks: Sequence[engine.Callback] = (),
        run_files: Collection[str] = FILES) -> reports.RunReport:
  """Runs (or resumes, or reports) the grid study of `config` in `workdir_path`.

  devices: the devices to shard the ensembles over (default: all). callbacks: the engine's
  callbacks (rare_tasks.core.engine.Callback), run beside the study's own. run_files: what
  --overwrite deletes (default: what this study writes).
  """
  start = time.perf_counter()
  # 1. The config and its cells.
  schema.validate(config)
  task = task_of(config)
  cells = expand(config, task)
  groups = group_cells(cells)
  # 2. The work directory.
  wd = workdir.prepare(workdir_path, config, overwrite, defaults=schema.base_config(),
                       run_files=run_files, not_identity=schema.NOT_IDENTITY,
                       aliases=schema.ALIASES)
  # 3. The closed form.
  theory = task.theory
  predicted = None if theory is None else {c.index: theory.predict(c) for c in cells}
  predicted_file = predictions.write(wd, cells, predicted)
  # 4. Training.
  mesh = placement.ensemble_mesh(devices)
  log.info("%d cells in %d ensemble groups, %d steps each, on %d device(s); workdir %s",
           len(cells), len(groups), config.train.steps, mesh.devices.size, wd)
  names = run_names(cells)
  with tensorboard.writing(config.log.tensorboard, wd / tensorboard.DIR,
                           lambda r: names[r["cell"]]) as logged:
    trained = training.train_groups(config, wd, groups, task, mesh, (*callbacks, *logged))
  if trained == 0:
    log.info("Finished run found in %s: nothing retrained; report regenerated.", wd)
  # 5. Results.
  metrics = workdir.read_metrics(wd)
  rows = results.build_results(config, task, cells, predicted, metrics)
  tables = [results.write_results(wd, rows, task), predicted_file]
  # 6. The report.
  run_results = GridResults(config, wd, task, cells, groups, predicted, metrics, rows, trained,
                            time.perf_counter() - start)
  opening = [s.section(run_results) for s in OPENING if s.applies(run_results)]
  measured = [s.section(run_results) for s in MEASUREMENTS if s.applies(run_results)]
  by_index = {c.index: c for c in cells}
  diverged = reports.diverged_section(metrics, "cell", lambda r: by_index[r["cell"]].label)
  summary = reports.write_summary(
      wd, opening + [diverged, overview.index(opening + tables)] + measured)
  return reports.RunReport(wd, trained, time.perf_counter() - start, summary)

