"""The injection plan: exact long-run frequency in either unit, burst sizes, injected consistent
with the manifest, per-epoch permutations of the train split, chunking invariance, the manifest
files, and frequencies or gaps that do not fit the batch refused with the field."""

from fractions import Fraction

import numpy as np
import pytest

from rare_tasks.core.config import ConfigError
from rare_tasks.lm import injections, tasks
from rare_tasks.lm.injections import INJECTED_TOKENS, KEEP, Injection

TASKS = tasks.make_tasks(("comparison", "addition"), 6, 64, seed=0)  # 18 train instances each
BATCH = 8


def test_rates_in_both_units():
  assert injections.rate_per_update(0.001, "per_token", 32, 64) == Fraction(2048, 1000)
  assert injections.rate_per_update(0.0125, "per_sequence", 32, 64) == Fraction(2, 5)


@pytest.mark.parametrize("rate,gap", [(Fraction(2, 5), 1), (Fraction(3, 4), 4), (Fraction(2), 3)])
def test_the_long_run_frequency_is_exact_and_bursts_have_the_stated_size(rate, gap):
  plan = Injection(tasks=(0,), rate=rate, gap=gap, withhold_steps=3)
  steps = 3 + 20 * gap
  injected, (manifest,) = injections.plan_chunk([plan], TASKS, 0, steps, BATCH, eos_id=0)
  per_step = (injected[:, 0, :, 0] != KEEP).sum(axis=1)
  assert per_step[:3].sum() == 0
  assert per_step.sum() == rate * 20 * gap  # whole periods: exact
  burst = per_step[3::gap]
  assert set(burst.tolist()) <= {int(rate * gap), injections.injection.largest_burst(rate, gap)}
  assert per_step.sum() == burst.sum()  # nothing between bursts
  assert len(manifest) == per_step.sum()


def test_injected_rows_hold_the_manifests_instances_and_eos():
  plans = [Injection(tasks=(0, 1), rate=Fraction(3, 2), seed=4),
           Injection(tasks=(1,), rate=Fraction(1), seed=4), Injection(tasks=(), rate=Fraction(0))]
  injected, manifests = injections.plan_chunk(plans, TASKS, 5, 12, BATCH, eos_id=0)
  assert injected.shape == (12, 3, BATCH, INJECTED_TOKENS)
  for m, manifest in enumerate(manifests):
    marked = np.zeros((12, BATCH), bool)
    for step, row, inst, task in manifest:
      np.testing.assert_array_equal(injected[step - 5, m, row],
                                    [*TASKS[task].instances[inst], 0])
      assert inst in TASKS[task].train  # only train instances are injected
      marked[step - 5, row] = True
    assert np.all((injected[:, m, :, 0] != KEEP) == marked)  # nothing outside the manifest
    assert np.all(injected[:, m][~marked] == KEEP)
  assert len(manifests[2]) == 0 and np.all(injected[:, 2] == KEEP)
  # A cell injecting two tasks fills its rows in task order: comparison first.
  first = manifests[0][manifests[0][:, 0] == 5]
  assert list(first[:, 3]) == sorted(first[:, 3]) and list(first[:, 1]) == list(range(len(first)))


def test_every_epoch_is_a_permutation_of_the_train_split():
  train = TASKS[0].train
  drawn = injections.draws(seed=2, task_index=0, train=train, start=0, stop=3 * len(train))
  for e in range(3):
    epoch = drawn[e * len(train):(e + 1) * len(train)]
    assert sorted(epoch) == sorted(train)
  assert not np.array_equal(drawn[:len(train)], drawn[len(train):2 * len(train)])
  # A lower frequency sees a prefix of the same sequence.
  np.testing.assert_array_equal(injections.draws(2, 0, train, 0, 7), drawn[:7])


def test_plans_do_not_depend_on_how_steps_are_chunked():
  plans = [Injection(tasks=(0,), rate=Fraction(7, 3), gap=2, withhold_steps=1, seed=1)]
  whole, (m_whole,) = injections.plan_chunk(plans, TASKS, 0, 30, BATCH, eos_id=0)
  parts = [injections.plan_chunk(plans, TASKS, a, b - a, BATCH, eos_id=0)
           for a, b in [(0, 4), (4, 5), (5, 30)]]
  np.testing.assert_array_equal(whole, np.concatenate([h for h, _ in parts]))
  np.testing.assert_array_equal(m_whole, np.concatenate([m[0] for _, m in parts]))


def test_apply_injected_changes_only_the_first_four_tokens_of_injected_rows():
  rows = np.arange(2 * BATCH * 10).reshape(2, BATCH, 10)
  injected = np.full((2, BATCH, INJECTED_TOKENS), KEEP)
  injected[0, 3] = [1, 2, 3, 0]
  out = injections.apply_injected(rows, injected)
  np.testing.assert_array_equal(out[0, 3, :4], [1, 2, 3, 0])
  changed = out != rows
  assert changed.sum() == 4 and changed[0, 3, :4].all()


def test_manifest_files_append_truncate_and_read_back(tmp_path):
  path = injections.manifest_path(tmp_path, "cell")
  names = ("comparison", "addition")
  injections.append_manifest(path, np.array([[0, 0, 5, 0], [1, 0, 6, 1]]), names)
  injections.append_manifest(path, np.array([[2, 1, 7, 0]]), names)
  rows, names = injections.read_manifest(path)
  np.testing.assert_array_equal(rows, [[0, 0, 5], [1, 0, 6], [2, 1, 7]])
  assert list(names) == ["comparison", "addition", "comparison"]
  injections.truncate_manifest(path, 2)
  rows, _ = injections.read_manifest(path)
  np.testing.assert_array_equal(rows, [[0, 0, 5], [1, 0, 6]])
  assert path.read_text().startswith("step,row,instance,task\n")


@pytest.mark.parametrize("text", ["", "step,ro"])
def test_a_manifest_killed_while_its_header_was_written_is_written_anew(tmp_path, text):
  path = injections.manifest_path(tmp_path, "cell")
  path.parent.mkdir(parents=True)
  path.write_text(text)
  injections.truncate_manifest(path, 0)
  assert not path.exists()
  injections.append_manifest(path, np.array([[0, 1, 5, 0]]), ("comparison",))
  assert path.read_text() == "step,row,instance,task\n0,1,5,comparison\n"


def test_a_frequency_above_one_instance_per_row_is_refused():
  with pytest.raises(ConfigError, match=r"config.grid.frequency = 0.02: allowed: frequencies "
                                        r"per_token of at most 0.015625"):
    injections.check_rows([0.001, 0.02], [1], "per_token", 8, 64, 1)
  with pytest.raises(ConfigError, match="config.grid.frequency = 0.75"):
    injections.check_rows([0.75], [1], "per_sequence", 8, 64, 2)  # 2 tasks x 6 > 8 rows
  injections.check_rows([0.5], [1], "per_sequence", 8, 64, 2)


def test_a_burst_larger_than_the_batch_is_refused():
  with pytest.raises(ConfigError, match=r"config.grid.gap = 16: allowed: gaps whose bursts fit "
                                        r"in the batch's 8 rows"):
    injections.check_rows([0.125], [1, 8, 16], "per_sequence", 8, 64, 1)
