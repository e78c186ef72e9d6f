"""Tests of rare_tasks/synthetic/grid.py: expansion order, cell configs and derived quantities,
(streams x members) groups."""

import itertools

import ml_collections
import numpy as np
import pytest

from rare_tasks.synthetic import config as schema
from rare_tasks.synthetic import grid
from rare_tasks.synthetic.tasks import LinearMixture

WIDTHS = (16, 4, 8)
FREQS = (0.01, 0.1, 0.2)
SEEDS = (0, 1)


def _config():
  c = schema.base_config()
  # Listed in alphabetical order: ConfigDict iterates keys sorted, so this is the product order
  # whichever of the two the implementation follows.
  c.grid = ml_collections.ConfigDict(dict(frequency=FREQS, seed=SEEDS, width=WIDTHS))
  schema.validate(c)
  return c


def test_expand_is_the_product_in_order():
  cells = grid.expand(_config())
  assert len(cells) == 3 * 2 * 3
  assert [c.index for c in cells] == list(range(18))
  for cell, (f, s, w) in zip(cells, itertools.product(FREQS, SEEDS, WIDTHS)):
    assert (cell.values["rare_frequency"], cell.values["seed"], cell.values["width"]) == (f, s, w)
  assert cells[0].values["width"] == 16 and cells[1].values["width"] == 4
  assert cells[3].values["seed"] == 1 and cells[3].values["rare_frequency"] == 0.01
  assert cells[17].values == {**cells[0].values, "rare_frequency": 0.2, "seed": 1, "width": 8}


def test_expand_follows_grid_values_order():
  c = schema.base_config()
  c.grid.width = (8, 4)
  c.grid.frequency = (0.01, 0.1)
  c.grid.seed = (0, 1, 2)
  axes = [schema.RECORDED_AS.get(a, a) for a in schema.grid_values(c)]
  cells = grid.expand(c)
  assert len(cells) == 12
  for cell, combo in zip(cells, itertools.product(*schema.grid_values(c).values())):
    assert tuple(cell.values[a] for a in axes) == combo


def test_cells_are_numbered_by_the_frequency_axis_recorded_name():
  # "gap" < "rare_frequency": the gap varies slower than the frequency, as it did before the
  # axis was renamed grid.frequency (which sorts before "gap").
  c = schema.base_config()
  c.injection.schedule = "bursts"
  c.grid.gap = (1, 2)
  c.grid.frequency = (1 / 64, 1 / 32)
  schema.validate(c)
  cells = grid.expand(c)
  assert [(x.values["gap"], x.values["rare_frequency"]) for x in cells] == [
      (1, 1 / 64), (1, 1 / 32), (2, 1 / 64), (2, 1 / 32)]
  assert "frequency" not in cells[0].values and cells[0].record["rare_frequency"] == 1 / 64


def test_cells_carry_the_config_values_of_other_axes():
  c = _config()
  c.model.activation = "relu"
  c.train.learning_rate = 0.5
  c.task.beta = 2.0
  cell = grid.expand(c)[5]
  assert set(cell.values) == set(schema.CELL_VALUES)
  assert cell.values["activation"] == "relu"
  assert cell.values["learning_rate"] == 0.5
  assert cell.values["beta"] == 2.0
  assert cell.values["num_hidden_layers"] == 0
  assert cell.values["common_exponent"] == 1.0


def test_empty_grid_is_one_cell():
  c = schema.base_config()
  c.grid = ml_collections.ConfigDict()
  cells = grid.expand(c)
  assert len(cells) == 1
  assert cells[0].values["width"] == c.model.width
  assert cells[0].values["rare_frequency"] == c.injection.frequency


def test_group_cells_by_width_as_streams_by_members():
  cells = grid.expand(_config())
  groups = grid.group_cells(cells)
  assert [g.static["width"] for g in groups] == [4, 8, 16]
  assert [g.name for g in groups] == ["width4_identity_depth0", "width8_identity_depth0",
                                      "width16_identity_depth0"]
  seen = []
  for g in groups:
    assert (g.num_streams, g.num_members) == (len(SEEDS), len(FREQS))
    for s, row in enumerate(g.cells):
      for p, cell in enumerate(row):
        assert cell.values["width"] == g.static["width"]
        assert cell.values["seed"] == SEEDS[s]
        assert cell.values["rare_frequency"] == FREQS[p]
    flat = g.flat_cells()
    assert flat == [c for row in g.cells for c in row]
    seen += [c.index for c in flat]
  assert sorted(seen) == list(range(len(cells)))


def test_group_cells_splits_on_activation_and_depth():
  c = _config()
  c.grid = ml_collections.ConfigDict(
      dict(activation=("relu", "identity"), num_hidden_layers=(1, 0), seed=(0, 1)))
  groups = grid.group_cells(grid.expand(c))
  assert len(groups) == 4
  assert [g.name for g in groups] == [
      "width32_identity_depth0", "width32_identity_depth1", "width32_relu_depth0",
      "width32_relu_depth1"]
  assert all(g.num_streams == 2 and g.num_members == 1 for g in groups)


def test_group_cells_members_differ_by_learning_rate():
  c = schema.base_config()
  c.grid = ml_collections.ConfigDict(dict(learning_rate=(1e-3, 1e-2), seed=(3, 4, 5)))
  (g,) = grid.group_cells(grid.expand(c))
  assert (g.num_streams, g.num_members) == (3, 2)
  assert [[c.values["learning_rate"] for c in row] for row in g.cells] == [[1e-3, 1e-2]] * 3


def test_group_cells_refuses_a_non_product():
  cells = grid.expand(_config())
  with pytest.raises(ValueError, match="product"):
    grid.group_cells(cells[1:])


def test_a_cell_carries_its_mixture_burst_size_and_record():
  c = schema.base_config()
  c.task.num_tasks, c.task.block_size = 4, 2
  c.grid.frequency = (1 / 32, 1 / 8)
  c.grid.beta = (1.0, (0.0, 1.0, 2.0, 3.0))
  task = LinearMixture(4, 2)
  for cell in grid.expand(c, task):
    v = cell.values
    np.testing.assert_array_equal(cell.task_frequencies, task.mixture(v["rare_frequency"], 1.0))
    assert cell.burst_size == 0  # steady injection
    assert cell.record == {k: list(x) if isinstance(x, tuple) else x for k, x in v.items()}
  assert cell.values["beta"] == (0.0, 1.0, 2.0, 3.0) and cell.record["beta"] == [0, 1, 2, 3]
  c.injection.schedule = "bursts"
  c.grid.gap = (2, 4)
  c.train.batch_size = 64
  sizes = {(cell.values["rare_frequency"], cell.values["gap"]): cell.burst_size
           for cell in grid.expand(c, task)}
  assert sizes == {(1 / 32, 2): 4, (1 / 32, 4): 8, (1 / 8, 2): 16, (1 / 8, 4): 32}


def test_make_cell_derives_what_expand_does():
  c = _config()
  task = LinearMixture(c.task.num_tasks, c.task.block_size)
  cells = grid.expand(c, task)
  again = [grid.make_cell(cell.index, cell.values, task, c) for cell in cells]
  assert again == cells


def test_run_names_say_width_frequency_seed_and_every_other_axis_the_grid_varies():
  cells = grid.expand(_config())
  names = grid.run_names(cells)
  assert list(names) == [c.index for c in cells] and len(set(names.values())) == len(cells)
  c = cells[0].values
  assert names[0] == f"width={c['width']},frequency={c['rare_frequency']},seed={c['seed']}"
  config = _config()
  config.grid.learning_rate = (1e-3, 0.01)
  names = grid.run_names(grid.expand(config))
  assert names[0] == "width=16,frequency=0.01,seed=0,learning_rate=0.001"
