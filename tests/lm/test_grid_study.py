"""The injection study end to end on a tiny grid: the work directory and results.csv, manifests
that match the batches actually trained, kill and resume bit-identical with injections, a
finished run reported without training, cells trained one per program equal to the ensemble,
and bad input refused before any compute."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from rare_tasks.core import tables, tensorboard, workdir
from rare_tasks.core.config import ConfigError
from rare_tasks.lm import (
  data,
  gradient_log,
  grid,
  grid_config,
  grid_study,
  injections,
  memory,
  task_trace,
  tasks,
)
from rare_tasks.lm.program import NOT_HEADLINE
from rare_tasks.lm.report import results_table
from rare_tasks.lm.trainer import Trainer, with_injected
from tests.callbacks import after_chunk
from tests.tensorboard_events import numbers_by_step, runs, shown

STEPS = 8
TIMING = ("tokens_per_s", "model_tokens_per_s")


def tiny_config():
  c = grid_config.base_config()
  c.grid.update(dict(size=("cpu_d16",), frequency=(0.5, 0.25), gap=(1, 2),
                     task=("comparison", "addition"), seed=(0,)))
  c.injection.update(dict(unit="per_sequence", schedule="bursts", withhold_steps=1))
  c.task.num_symbols = 4
  c.data.update(dict(vocab_size=64, seq_len=16, num_states=64, validation_rows=16))
  c.train.update(dict(steps=STEPS, warmup_steps=2, steps_per_dispatch=2, batch_size=8))
  c.eval_every = 4
  c.checkpoint_interval_s = 0.0
  return c


class Killed(Exception):
  pass


def _records(wd):
  return [{k: v for k, v in r.items() if k not in TIMING}
          for r in workdir.read_metrics(wd, grid_study.METRICS_KEY)]


def _manifests(wd):
  return {p.name: p.read_text() for p in sorted((wd / injections.MANIFEST_DIR).iterdir())}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """The tiny study, with every chunk's batches and injected as the trainer received them;
  logging to TensorBoard."""
  wd = tmp_path_factory.mktemp("lm_grid") / "run"
  seen = []
  original = Trainer.chunk

  def spy(self, state, batches, injected=None, trace=None, first_step=0):
    seen.append((np.asarray(batches), None if injected is None else np.asarray(injected)))
    return original(self, state, batches, injected, trace, first_step)

  Trainer.chunk = spy
  c = tiny_config()
  c.log.tensorboard = True
  try:
    report = grid_study.run(c, wd)
  finally:
    Trainer.chunk = original
  return wd, report, seen


def test_a_run_writes_results_manifests_figures_and_a_summary(uninterrupted):
  wd, report, _ = uninterrupted
  assert report.trained_steps == STEPS
  for name in ("config.json", "run.json", "metrics.jsonl", "results.csv", "summary.md",
               "figures/heatmap_comparison.png", "figures/task_loss_addition.png",
               "figures/gap_comparison.png"):
    assert (wd / name).exists(), name
  rows = tables.read_csv(wd / "results.csv")
  assert tuple(rows[0]) == results_table.COLUMNS
  # 2 frequencies x 2 gaps x 2 tasks (one row each) + a control with a row per task.
  assert len(rows) == 2 * 2 * 2 + 2
  assert {(r["task"], r["frequency"]) for r in rows if r["frequency"] == "0.0"} == {
      ("comparison", "0.0"), ("addition", "0.0")}
  info = json.loads((wd / "run.json").read_text())
  assert info["tasks"]["comparison"]["train_instances"] == 8
  assert int(rows[0]["params"]) == info["sizes"]["cpu_d16"]["params"]["total"]
  records = workdir.read_metrics(wd, grid_study.METRICS_KEY)
  assert sorted({r["step"] for r in records}) == [4, 8] and len(records) == 2 * 9
  for r in records:
    for name in ("comparison", "addition"):
      assert 0 <= r[f"{name}_train_accuracy"] <= 1 and r[f"{name}_test_loss"] > 0
  cells = {c["name"] for c in info["cells"]}
  assert set(_manifests(wd)) == {f"{name}.csv" for name in cells}
  for r in records:
    for name in ("comparison", "addition"):
      assert 0 <= r[f"{name}_train_choice_accuracy"] <= 1
      for split in ("test_unseen", "test_mirror"):  # None: no off-diagonal pair in the split
        v = r[f"{name}_{split}_choice_accuracy"]
        assert v is None or 0 <= v <= 1
      assert 0 <= r[f"{name}_train_format_rate"] <= 1
  summary = (wd / "summary.md").read_text()
  assert "threshold (accuracy)" in summary and "Not measured" not in summary
  assert len(tables.read_csv(wd / "thresholds.csv")) == 2 * 1 * 2  # tasks x sizes x scores


def test_the_manifest_matches_the_batches_actually_trained(uninterrupted):
  wd, _, seen = uninterrupted
  info = json.loads((wd / "run.json").read_text())
  batches = np.concatenate([b for b, _ in seen])
  injected = np.concatenate([h for _, h in seen])
  assert batches.shape[0] == STEPS
  c = tiny_config()
  task_list = tasks.make_tasks(tuple(c.grid.task), c.task.num_symbols, c.data.vocab_size,
                               c.task.seed)
  by_name = {t.name: t for t in task_list}
  trained = np.stack([np.asarray(jax.vmap(jax.vmap(with_injected, (None, 0)))(batches,
                                                                                injected))])[0]
  for cell in info["cells"]:
    rows, names = injections.read_manifest(injections.manifest_path(wd, cell["name"]))
    member = cell["member"]
    injected = np.zeros((STEPS, 8), bool)
    for (step, row, inst), name in zip(rows, names):
      np.testing.assert_array_equal(trained[step, member, row, :4],
                                    [*by_name[name].instances[inst], 0])
      injected[step, row] = True
    # Every other row is the shared text itself; an injected row differs only in 4 tokens.
    np.testing.assert_array_equal(trained[:, member][~injected], batches[~injected])
    np.testing.assert_array_equal(trained[:, member, :, 4:], batches[:, :, 4:])
    assert not injected[0].any()  # withheld for one step
    if cell["injected"]:
      expected = sum(cell["frequency"] * 8 * cell["gap"] for t in range(1, STEPS, cell["gap"]))
      assert injected.sum() == expected
    else:
      assert injected.sum() == 0


def test_tensorboard_shows_every_cells_headline_numbers_in_a_run_of_its_own(uninterrupted):
  wd, _, _ = uninterrupted
  board = wd / tensorboard.DIR
  records = workdir.read_metrics(wd, grid_study.METRICS_KEY)
  identity = {"cell", "member", "size", "frequency", "gap", "injected", "seed", "steps"}
  names = {}
  for r in records:
    task = "+".join(r["injected"]) or "none"
    names[r["cell"]] = (f"size=cpu_d16,task={task},frequency={r['frequency']!r},seed=0,"
                        f"gap={r['gap']}")
  assert runs(board) == sorted(set(names.values())) and len(names) == 9  # 8 + the control
  assert "size=cpu_d16,task=comparison,frequency=0.25,seed=0,gap=2" in names.values()
  for cell, name in names.items():
    mine = [r for r in records if r["cell"] == cell]
    scalars = shown(board / name)
    assert scalars == numbers_by_step(mine, identity | set(NOT_HEADLINE))  # golden
    assert {"train_loss", "val_loss", "val_gap", "grad_norm", "learning_rate",
            "comparison_train_accuracy", "addition_test_loss"} <= set(scalars)
    assert sorted(scalars["val_loss"]) == [4, 8]


def test_a_killed_run_resumes_bit_identical(uninterrupted, tmp_path):
  wd, _, _ = uninterrupted
  killed = tmp_path / "killed"

  def kill(step):
    if step == 6:  # after the checkpoint at 4, with chunk 4..6 written to the manifests
      raise Killed

  with pytest.raises(Killed):
    grid_study.run(tiny_config(), killed, callbacks=[after_chunk(lambda _, step: kill(step))])
  assert _manifests(killed) != _manifests(wd)
  resumed = grid_study.run(tiny_config(), killed)
  assert resumed.trained_steps == STEPS - 4
  assert _records(killed) == _records(wd)
  assert _manifests(killed) == _manifests(wd)
  assert (killed / "results.csv").read_text() == (wd / "results.csv").read_text()


def test_a_finished_run_reports_without_training(uninterrupted, monkeypatch):
  wd, _, _ = uninterrupted
  before = _records(wd)

  def no_training(*args, **kwargs):
    raise AssertionError("a finished run trained again")

  monkeypatch.setattr(Trainer, "chunk", no_training)
  monkeypatch.setattr(Trainer, "init", no_training)
  report = grid_study.run(tiny_config(), wd)
  assert report.trained_steps == 0 and _records(wd) == before


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lm_workdir_before_engine"


def test_a_work_directory_written_before_the_engine_re_reports_and_resumes(tmp_path):
  """Its config.json holds the study's old name and learned_accuracy; written on one device, it
  resumes on one to the same records, bit for bit, in every value it measured then; what it did
  not measure (choice accuracy, format rate, the mirror splits) is NaN, and the summary says
  so."""
  old = json.loads((FIXTURES / "injection_finished" / "config.json").read_text())
  assert old["study"] == "lm_width_by_frequency" and old["learned_accuracy"] == 0.9
  finished, interrupted = tmp_path / "finished", tmp_path / "interrupted"
  shutil.copytree(FIXTURES / "injection_finished", finished)
  shutil.copytree(FIXTURES / "injection_interrupted", interrupted)
  stored = tables.read_csv(finished / "results.csv")
  assert grid_study.run(tiny_config(), finished).trained_steps == 0
  rows = tables.read_csv(finished / "results.csv")
  assert tuple(rows[0]) == results_table.COLUMNS and len(rows) == len(stored)
  for before, now in zip(stored, rows):
    assert {k: now[k] for k in before if k not in ("learned", "generalised")} == {
        k: v for k, v in before.items() if k not in ("learned", "generalised")}
    assert now["train_choice_accuracy"] == now["format_rate"] == "nan"
    assert now["generalised"] == ""  # not measured: unknown, not False
    assert float(now["train_choice_baseline"]) > 0  # counting needs no model
  summary = (finished / "summary.md").read_text()
  assert "Not measured in this run (comparison, addition)" in summary
  assert (finished / "figures/heatmap_comparison.png").exists()
  one = jax.devices()[:1]
  assert grid_study.run(tiny_config(), interrupted, devices=one).trained_steps == STEPS - 4
  assert _manifests(interrupted) == _manifests(finished)
  resumed, kept = _records(interrupted), _records(finished)
  assert len(resumed) == len(kept)
  # Resumed by today's compiled step, whose divergence guard (a select between the updated and
  # the previous state) changes how XLA compiles the update: the same numbers to a few float32
  # roundings. A run and its own resume agree bit for bit (the tests above).
  for new, old_record in zip(resumed, kept):
    for k, v in old_record.items():
      if isinstance(v, float):
        assert new[k] == pytest.approx(v, rel=2e-5, abs=1e-6), k
      else:
        assert new[k] == v, k
  assert {"comparison_train_choice_accuracy", "steps"} <= set(resumed[-1])


def _by_cell(wd):
  return {(r["size"], r["frequency"], r["gap"], tuple(r["injected"]), r["seed"], r["step"]):
          {k: v for k, v in r.items() if k not in ("cell", "member")} for r in _records(wd)}


def test_cells_trained_one_per_program_equal_the_same_cells_in_the_ensemble(uninterrupted,
                                                                            tmp_path):
  wd, _, _ = uninterrupted
  c = tiny_config()
  c.grid.update(dict(frequency=(0.5,), gap=(2,)))  # 2 of the ensemble's cells and the control
  c.mesh.one_program_per_cell = True
  alone = tmp_path / "alone"
  grid_study.run(c, alone)
  info = json.loads((alone / "run.json").read_text())
  assert info["sizes"]["cpu_d16"]["programs"] == 3
  assert (alone / "checkpoints/cpu_d16-m0").exists()
  ensemble, single = _by_cell(wd), _by_cell(alone)
  assert len(single) == 3 * 2
  for key, r in single.items():
    for k, v in r.items():
      if isinstance(v, float):
        assert v == pytest.approx(ensemble[key][k], rel=1e-4, abs=1e-5), (key, k)
      else:
        assert v == ensemble[key][k], (key, k)
  for name, text in _manifests(alone).items():
    assert text == _manifests(wd)[name]


def test_a_size_whose_ensemble_does_not_fit_trains_one_cell_per_program_with_fsdp(monkeypatch):
  real = memory.check_fits
  seen = []

  def only_one_member(preset, abstract_state, total_params, members, devices):
    seen.append(members)
    if members > 1:
      raise ConfigError("the ensemble does not fit")
    return real(preset, abstract_state, total_params, members, devices)

  monkeypatch.setattr(memory, "check_fits", only_one_member)
  c, sizes = grid_config.resolve(tiny_config(), "cpu")
  cells = grid.cells(c)["cpu_d16"]
  programs, info = grid_study.size_plans(c, sizes["cpu_d16"], "cpu_d16", cells,
                                     data.source_of(sizes["cpu_d16"]), jax.devices())
  assert seen == [len(cells), 1] and info["programs"] == len(cells)
  assert [p.name for p in programs][:2] == ["cpu_d16-m0", "cpu_d16-m1"]
  assert all(dict(p.trainer.mesh.shape) == {"member": 1, "data": 1, "fsdp": 8}
             for p in programs)
  assert [p.cells for p in programs] == [[x] for x in cells]


@pytest.mark.parametrize("change,field", [
    (lambda c: c.grid.update(dict(frequency=(0.5, 1.5))), "grid.frequency"),
    # Both tasks in every cell: 2 x 0.75 x 8 instances per update > 8 rows.
    (lambda c: (c.grid.update(dict(frequency=(0.75,), gap=(1,))),
                c.task.update(dict(jointly=True))), "grid.frequency"),
    (lambda c: c.grid.update(dict(gap=(1, 4))), "grid.gap"),  # 0.5 x 4 x 8 rows > 8
    (lambda c: c.grid.update(dict(gap=(0, 1))), "grid.gap"),
    (lambda c: c.update(dict(task=dict(c.task, num_symbols=40))), "task.num_symbols"),
    (lambda c: c.update(dict(task=dict(c.task, num_symbols=1))), "task.num_symbols"),
    (lambda c: c.injection.update(dict(unit="per_row")), "injection.unit"),
    (lambda c: c.injection.update(dict(schedule="poisson")), "injection.schedule"),
    (lambda c: c.data.update(dict(seq_len=3)), "data.seq_len"),
    (lambda c: c.grid.update(dict(size=("cpu_d16", "7M"))), "grid.size"),
    (lambda c: c.grid.update(dict(task=("comparison", "parity"))), "grid.task"),
    (lambda c: c.learned.update(dict(threshold=1.5)), "learned.threshold"),
])
def test_bad_input_is_refused_before_any_compute(change, field, tmp_path, monkeypatch):
  def no_compute(*args, **kwargs):
    raise AssertionError("compute before the config was checked")

  monkeypatch.setattr(Trainer, "init", no_compute)
  c = tiny_config()
  change(c)
  with pytest.raises(ConfigError, match=rf"^config\.{field} = .*: allowed: "):
    grid_study.run(c, tmp_path / "bad")
  assert not (tmp_path / "bad").exists()



def test_on_real_text_the_task_vocabulary_must_be_the_models(shards, text_cache, tmp_path):
  c = tiny_config()
  c.data.update(dict(corpus="jsonl", path=str(shards), cache_dir=str(text_cache),
                     vocab_size=320))  # a 320-token BPE: the model's vocabulary is 384
  with pytest.raises(ConfigError, match=r"^config\.data\.vocab_size = 320: allowed: the "
                                        r"model's vocabulary on this text, 384"):
    grid_study.run(c, tmp_path / "bad")
  assert not (tmp_path / "bad").exists()


def test_a_steps_axis_trains_each_length_as_its_own_schedule(uninterrupted, tmp_path):
  """Two lengths: a program per size and length, each cell's records end at its length with
  the learning rate at its schedule's floor, and the cells at the run's own train.steps equal
  the same cells of a run without the axis."""
  c = tiny_config()
  c.grid.update(dict(frequency=(0.5,), gap=(2,), steps=(STEPS, 2 * STEPS)))
  wd = tmp_path / "lengths"
  grid_study.run(c, wd)
  assert sorted(p.name for p in (wd / "checkpoints").iterdir()) == ["cpu_d16-t16", "cpu_d16-t8"]
  records = workdir.read_metrics(wd, grid_study.METRICS_KEY)
  for steps in (STEPS, 2 * STEPS):
    mine = [r for r in records if r["steps"] == steps]
    assert max(r["step"] for r in mine) == steps and len({r["cell"] for r in mine}) == 3
  # At step 8 the short schedule has decayed to its end, the long one is half-way.
  at8 = {r["steps"]: r["learning_rate"] for r in records if r["step"] == STEPS}
  assert at8[2 * STEPS] > 5 * at8[STEPS]
  rows = tables.read_csv(wd / "results.csv")
  assert {r["steps"] for r in rows} == {"8", "16"}
  assert {r["steps"] for r in tables.read_csv(wd / "thresholds.csv")} == {"8", "16"}
  assert "data scaling (8 against 16 steps, 2x)" in (wd / "summary.md").read_text()
  # The 8-step cells are the uninterrupted run's cells at frequency 0.5, gap 2, and the control.
  base = _by_cell(uninterrupted[0])
  for key, r in _by_cell(wd).items():
    if r["steps"] == STEPS:
      old = base[key]
      for k, v in old.items():
        if isinstance(v, float):
          assert r[k] == pytest.approx(v, rel=1e-4, abs=1e-5), (key, k)


def mechanism_config(on: bool):
  """The tiny study with bursts after a withholding phase, every mechanism measurement on (or
  off). One update a chunk, on and off: the gradients are measured at every update from the
  first burst, and a scan of another length may round differently."""
  c = tiny_config()
  c.grid.task = ("comparison",)
  c.injection.withhold_steps = 2
  c.train.steps_per_dispatch = 1
  c.mechanism.update(dict(gradients=on, probes=on, retention=on, top_k=(0.25, 1.0)))
  return c


@pytest.fixture(scope="module")
def with_mechanism(tmp_path_factory):
  wd = tmp_path_factory.mktemp("lm_mechanism") / "run"
  return wd, grid_study.run(mechanism_config(True), wd)


def test_the_measurements_leave_training_bit_for_bit_unchanged(with_mechanism, tmp_path):
  wd, _ = with_mechanism
  grid_study.run(mechanism_config(False), tmp_path / "off")
  off = _records(tmp_path / "off")
  on = _records(wd)
  assert len(on) == len(off)
  for a, b in zip(on, off):
    assert {k: v for k, v in a.items() if k in b} == b
    assert set(a) - set(b) >= {"comparison_order_r2", "comparison_trace_loss", "trace_first"}


def test_the_mechanism_measures_every_burst_and_writes_its_tables(with_mechanism):
  wd, _ = with_mechanism
  got = workdir.read_metrics(wd, gradient_log.KEY, gradient_log.FILE)
  cells = {c.index: c for c in grid.cells(grid_config.resolve(mechanism_config(True),
                                                              "cpu")[0])["cpu_d16"]}
  # Evaluation 4 and, for the gap-2 cells, bursts 2, 4, 6 and the updates halfway, 3, 5, 7.
  assert sorted({r["step"] for r in got}) == [2, 3, 4, 5, 6, 7]
  for r in got:
    cell = cells[r["cell"]]
    carries = cell.gap == 2 and r["step"] % 2 == 0 or cell.gap == 1 and cell.frequency > 0
    assert r["injection_step"] == carries
  for name in ("gradients.csv", "probes.csv", "retention.csv"):
    assert len(tables.read_csv(wd / name)) > 0
  retention = tables.read_csv(wd / "retention.csv")
  assert {int(r["gap"]) for r in retention} == {2}
  summary = (wd / "summary.md").read_text()
  for text in ("Gradient decomposition", "order feature R^2", "Retention of each comparison"):
    assert text in summary
  for name in ("gradients", "probes", "retention"):
    assert (wd / "figures" / f"{name}_comparison.png").exists()
  # The trace covers every update.
  for cell in cells.values():
    signal = task_trace.member_trace(
        [r for r in workdir.read_metrics(wd, grid_study.METRICS_KEY) if r["cell"] == cell.index],
        "comparison", STEPS)
    assert np.isfinite(signal[1:]).all() and np.isnan(signal[0])


def test_a_killed_run_with_the_mechanism_resumes_bit_identical(with_mechanism, tmp_path):
  wd, _ = with_mechanism
  killed = tmp_path / "killed"

  def kill(step):
    if step == 6:
      raise Killed

  with pytest.raises(Killed):
    grid_study.run(mechanism_config(True), killed,
                   callbacks=[after_chunk(lambda _, step: kill(step))])
  grid_study.run(mechanism_config(True), killed)
  assert _records(killed) == _records(wd)
  for name in ("gradients.csv", "probes.csv", "retention.csv"):
    assert (killed / name).read_text() == (wd / name).read_text()
