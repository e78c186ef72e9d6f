"""Tests of rare_tasks/lm/mixture_design.py: the search driven through the study by a planted
learner whose threshold per size and seed is known; resume after a kill between rounds, planted
and trained for real; centres read from a finished injection study; the round's cells."""

import math

import jax
import numpy as np
import pytest

from rare_tasks.core import tables, tensorboard, workdir
from rare_tasks.core.config import ConfigError
from rare_tasks.lm import data, grid, mixture_config, specs
from rare_tasks.lm import mixture_design as study
from rare_tasks.lm.report import mixture_design as report
from tests.tensorboard_events import runs, shown

SIZES = ("cpu_d16_l2", "cpu_d32", "cpu_d64")
# Each size's true threshold per seed (per sequence): a cell learns iff its frequency >= it.
PLANTED = {"cpu_d16_l2": (0.2, 0.3, 0.25), "cpu_d32": (0.1, 0.12, 0.09),
           "cpu_d64": (0.05, 0.04, 0.06)}
STEPS, EVAL = 400, 100


def config():
  c = mixture_config.base_config()
  c.grid.size = SIZES
  c.grid.task = ("comparison",)
  c.grid.seed = (0, 1, 2)
  c.injection.unit = "per_sequence"
  c.task.num_symbols = 8
  c.data.seq_len = 16
  c.train.batch_size = 8
  c.train.steps = STEPS
  c.train.warmup_steps = 10
  c.eval_every = EVAL
  c.design.min_frequency, c.design.max_frequency = 0.005, 0.8
  c.design.initial_frequency = 0.07
  c.design.num_candidates = 4
  c.design.refine_rounds = 2
  return c


class Planted:
  """A round trainer that trains nothing: it writes each cell's records as if the cell learned
  its task from the first evaluation iff its frequency reaches the planted threshold of its
  size and seed, with a background loss of 2 + frequency (the control's is 2)."""

  def __init__(self, fail_at_round: int | None = None):
    self.rounds, self.fail_at_round = [], fail_at_round

  def __call__(self, rc, rd, cells) -> int:
    index = int(rd.name.removeprefix("round"))
    if index == self.fail_at_round:
      raise KeyboardInterrupt("killed between rounds")
    self.rounds.append(index)
    records = []
    for cs in cells.values():
      for cell in cs:
        seed_index = list(rc.grid.seed).index(cell.seed)
        scale = 2.0 if cell.tasks == ("addition",) else 1.0  # addition needs twice the rate
        learns = bool(cell.tasks) and cell.frequency >= scale * PLANTED[cell.size][seed_index]
        for step in range(EVAL, cell.steps + 1, EVAL):
          record = {"cell": cell.index, "step": step, "val_loss": 2.0 + cell.frequency}
          for task in rc.grid.task:
            record[f"{task}_train_accuracy"] = 1.0 if learns else 0.0
            record[f"{task}_train_loss"] = 0.1 if learns else 2.0
          records.append(record)
    workdir.append_metrics(rd, records)
    return sum(len(cs) for cs in cells.values()) * STEPS


def test_planted_thresholds_found_within_one_bracket(tmp_path):
  planted = Planted()
  result = study.run(config(), tmp_path, train_round=planted)
  rows = {r["size"]: r for r in tables.read_csv(tmp_path / report.DESIGN_FILE)}
  for size, truth in PLANTED.items():
    r = rows[size]
    # the size's range holds every seed's planted threshold
    assert float(r["threshold_low"]) < min(truth) and max(truth) <= float(r["threshold_high"])
    # and each seed's bracket holds its own, at the search's final resolution
    f, x = result_tested(tmp_path, size)
    lo, hi = study.frequency_search.bracket(f, x)
    for s, t in enumerate(truth):
      assert lo[s] < t <= hi[s] and hi[s] / lo[s] <= float(r["resolution"]) + 1e-12
    assert float(r["threshold"]) == pytest.approx(float(np.median(hi)))
    # background loss at the needed frequency: 2 + f against the control's 2
    assert float(r["background_loss_delta"]) == pytest.approx(np.mean(hi))
    assert float(r["compute_to_learn"]) == pytest.approx(
        EVAL * float(r["flops_per_step"]))
    assert r["center_from"] == "design.initial_frequency"
  # the needed frequency falls with size here, and the summary says the pairs separate
  text = (tmp_path / "summary.md").read_text()
  assert "cpu_d16_l2 -> cpu_d32: separated, the threshold falls" in text
  assert "is non-increasing in size" in text
  assert planted.rounds == list(range(result.summary["rounds"]))
  assert result.summary["models"] < result.summary["grid_models"]


def result_tested(wd, size) -> tuple[np.ndarray, np.ndarray]:
  """Every frequency tested for a size and each seed's outcome, read back from the rounds."""
  f, learned = [], []
  c = config()
  cells = {}
  for rd in sorted((wd / study.ROUNDS_DIR).iterdir()):
    stored = workdir.read_json(rd / study.CELLS_FILE)
    final = {r["cell"]: r for r in workdir.read_metrics(rd) if r["step"] == STEPS}
    for cell in stored:
      if cell["size"] == size and cell["injected"]:
        cells.setdefault(cell["frequency"], {})[cell["seed"]] = (
            final[cell["cell"]]["comparison_train_accuracy"] == 1.0)
  for freq, by_seed in sorted(cells.items()):
    f.append(freq)
    learned.append([by_seed[s] for s in c.grid.seed])
  return np.array(f), np.array(learned).T


def test_resume_after_a_kill_between_rounds_gives_the_same_tables(tmp_path):
  whole = tmp_path / "whole"
  study.run(config(), whole, train_round=Planted())
  killed = tmp_path / "killed"
  with pytest.raises(KeyboardInterrupt):
    study.run(config(), killed, train_round=Planted(fail_at_round=2))
  resumed = Planted()
  study.run(config(), killed, train_round=resumed)
  assert resumed.rounds[0] == 2  # rounds 0 and 1 were read back, not trained again
  for name in (report.DESIGN_FILE, report.MIN_SIZE_FILE, report.TRADEOFF_FILE):
    assert (killed / name).read_text() == (whole / name).read_text()


def test_a_round_that_changed_is_refused(tmp_path):
  study.run(config(), tmp_path, train_round=Planted())
  stored = tmp_path / study.ROUNDS_DIR / "round1" / study.CELLS_FILE
  stored.write_text(stored.read_text().replace('"seed": 0', '"seed": 5', 1))
  with pytest.raises(workdir.WorkdirError, match="other cells"):
    study.run(config(), tmp_path, train_round=Planted())


def test_centres_from_a_finished_injection_study(tmp_path):
  grid_wd = tmp_path / "grid"
  grid_wd.mkdir()
  tables.write_csv(grid_wd / "thresholds.csv",
                   ("task", "size", "steps", "metric", "threshold", "threshold_low",
                    "threshold_high"),
                   [{"task": "comparison", "size": "cpu_d16_l2", "steps": STEPS,
                     "metric": "accuracy", "threshold": 0.2, "threshold_low": 0.1,
                     "threshold_high": 0.4},
                    {"task": "comparison", "size": "cpu_d32", "steps": STEPS,
                     "metric": "accuracy", "threshold": math.inf, "threshold_low": 0.8,
                     "threshold_high": math.inf},
                    {"task": "comparison", "size": "cpu_d64", "steps": STEPS,
                     "metric": "choice_accuracy", "threshold": 0.01, "threshold_low": 0.0,
                     "threshold_high": 0.02}])
  c = config()
  c.design.centers_from = str(grid_wd)
  keys = study.keys_of(c, {"cpu_d16_l2": 1, "cpu_d32": 2, "cpu_d64": 3})
  centers = study.centers_of(c, keys)
  assert centers[("comparison", "cpu_d16_l2", STEPS)] == (pytest.approx(math.sqrt(0.02)),
                                                          f"the injection study in {grid_wd}")
  # no threshold there (not learned), or only under another score: the initial frequency
  assert centers[("comparison", "cpu_d32", STEPS)] == (0.07, "design.initial_frequency")
  assert centers[("comparison", "cpu_d64", STEPS)] == (0.07, "design.initial_frequency")
  c.design.centers_from = str(tmp_path)
  with pytest.raises(ConfigError, match="config.design.centers_from"):
    study.centers_of(c, keys)


def test_round_cells_members_and_controls():
  c = config()
  c.grid.size = ("cpu_d16_l2", "cpu_d64")
  c.grid.seed = (0, 1)
  candidates = {("comparison", "cpu_d16_l2", STEPS): np.array([0.1, 0.2]),
                ("comparison", "cpu_d64", STEPS): np.array([0.05])}
  cells = study.round_cells(c, candidates, controls=True)
  small = [(x.frequency, x.seed, x.tasks, x.member) for x in cells["cpu_d16_l2"]]
  assert small == [(0.1, 0, ("comparison",), 0), (0.1, 1, ("comparison",), 1),
                   (0.2, 0, ("comparison",), 2), (0.2, 1, ("comparison",), 3),
                   (0.0, 0, (), 4), (0.0, 1, (), 5)]
  assert [x.index for cs in cells.values() for x in cs] == list(range(10))
  assert all(x.program == "cpu_d64" for x in cells["cpu_d64"])
  later = study.round_cells(c, {("comparison", "cpu_d64", STEPS): np.array([0.05])}, False)
  assert list(later) == ["cpu_d64"] and all(not x.is_control for x in later["cpu_d64"])
  assert isinstance(later["cpu_d64"][0], grid.Cell)


def test_trained_for_real_killed_between_rounds_resumes_to_the_same_tables(tmp_path):
  """Two tiny sizes trained for real: a run killed after its first round, restarted, ends
  with the tables of an uninterrupted run."""
  c = mixture_config.base_config()
  c.grid.size = ("cpu_d16_l2", "cpu_d32")
  c.grid.seed = (0,)
  c.injection.unit = "per_sequence"
  c.task.num_symbols = 4
  c.data.seq_len = 16
  c.data.validation_rows = 16
  c.train.batch_size = 8
  c.train.steps = 40
  c.train.warmup_steps = 5
  c.train.steps_per_dispatch = 20
  c.train.learning_rate = 0.02
  c.eval_every = 20
  c.learned.criterion = "choice_accuracy"
  c.learned.threshold = 0.6
  c.learned.last_evals = 1
  c.design.initial_frequency = 0.3
  c.design.num_candidates = 2
  c.design.max_expansions = 1
  c.design.refine_rounds = 1
  c.log.tensorboard = True
  whole = tmp_path / "whole"
  first = study.run(c, whole)
  assert first.summary["rounds"] >= 2
  # TensorBoard: each round's cells in the round's folder
  names = {}
  for rd in sorted((whole / study.ROUNDS_DIR).iterdir()):
    for r in workdir.read_metrics(rd, study.METRICS_KEY):
      task = "+".join(r["injected"]) or "none"
      name = f"{rd.name}/size={r['size']},task={task},frequency={r['frequency']!r},seed=0"
      names[name] = names.get(name, {}) | {r["step"]: np.float32(r["val_loss"])}
  assert runs(whole / tensorboard.DIR) == sorted(names) and names
  for name, val_loss in names.items():
    assert shown(whole / tensorboard.DIR / name)["val_loss"] == val_loss
  killed = tmp_path / "killed"
  calls = []

  def kill_at_second(rc, rd, cells):
    calls.append(rd.name)
    if rd.name == "round1":
      raise KeyboardInterrupt("killed between rounds")
    return real(rc, rd, cells)

  _, sizes = mixture_config.resolve(c, "cpu")
  source = data.source_of(next(iter(sizes.values())))
  task_list = grid.tasks_of(c, source.eos_id)
  real = study.RealRounds(sizes, source, task_list, jax.devices(), {s: None for s in sizes},
                          {s: 1.0 for s in sizes}, ())
  with pytest.raises(KeyboardInterrupt):
    study.run(c, killed, train_round=kill_at_second)
  assert calls == ["round0", "round1"]
  study.run(c, killed)
  for name in (report.DESIGN_FILE, report.MIN_SIZE_FILE, report.TRADEOFF_FILE):
    assert (killed / name).read_text() == (whole / name).read_text()
  assert specs.RUN_FILE in {p.name for p in killed.iterdir()}


def test_two_tasks_are_searched_apart_in_the_same_ensembles(tmp_path):
  c = config()
  c.grid.size = ("cpu_d16_l2", "cpu_d64")
  c.grid.task = ("comparison", "addition")
  planted = Planted()
  study.run(c, tmp_path, train_round=planted)
  rows = {(r["task"], r["size"]): r for r in tables.read_csv(tmp_path / report.DESIGN_FILE)}
  for size in c.grid.size:
    for task, scale in (("comparison", 1.0), ("addition", 2.0)):
      r = rows[(task, size)]
      truth = [scale * t for t in PLANTED[size]]
      assert float(r["threshold_low"]) < min(truth) and max(truth) <= float(r["threshold_high"])
  # one program per size and round holds both tasks' candidates
  first = workdir.read_json(tmp_path / study.ROUNDS_DIR / "round0" / study.CELLS_FILE)
  assert {tuple(x["injected"]) for x in first} == {("comparison",), ("addition",), ()}
