"""The injection grid: cells per size with a control per seed, joint tasks, names, plans."""

from fractions import Fraction

from rare_tasks.lm import grid, grid_config


def _config():
  c = grid_config.base_config()
  c.grid.update(dict(size=("cpu_d16", "cpu_d32"), frequency=(0.01, 0.001), gap=(1, 4),
                     task=("comparison", "addition"), seed=(0, 3)))
  c.injection.schedule = "bursts"
  return c


def test_cells_are_the_product_and_a_control_per_seed():
  cells = grid.cells(_config())
  assert list(cells) == ["cpu_d16", "cpu_d32"]
  for size_cells in cells.values():
    assert len(size_cells) == 2 * 2 * 2 * 2 + 2
    controls = [x for x in size_cells if x.is_control]
    assert [(x.seed, x.frequency) for x in controls] == [(0, 0.0), (3, 0.0)]
    assert [x.member for x in size_cells] == list(range(len(size_cells)))
  every = [x for cs in cells.values() for x in cs]
  assert [x.index for x in every] == list(range(len(every)))
  assert len({x.name for x in every}) == len(every)
  assert every[0].name == "cpu_d16-comparison-f0.01-g1-s0"


def test_jointly_injected_tasks_make_one_cell_per_frequency_gap_and_seed():
  c = _config()
  c.task.jointly = True
  size_cells = grid.cells(c)["cpu_d16"]
  assert len(size_cells) == 2 * 2 * 2 + 2
  assert size_cells[0].tasks == ("comparison", "addition")
  assert size_cells[0].name == "cpu_d16-comparison+addition-f0.01-g1-s0"


def test_a_cells_plan_in_the_declared_unit():
  c = _config()
  c.data.seq_len = 64
  cell = next(x for x in grid.cells(c)["cpu_d16"] if x.tasks == ("addition",) and x.gap == 4)
  plan = grid.injection_of(cell, c, batch_size=32)
  assert plan.tasks == (1,) and plan.gap == 4 and plan.seed == cell.seed
  assert plan.rate == Fraction(1, 100) * 32 * 64
  control = grid.injection_of(grid.cells(c)["cpu_d16"][-1], c, 32)
  assert control.rate == 0 and control.tasks == ()


def test_programs_are_one_ensemble_or_one_per_cell():
  cells = grid.cells(_config())["cpu_d32"]
  assert grid.programs(cells, False) == [("cpu_d32", cells)]
  split = grid.programs(cells, True)
  assert [name for name, _ in split][:2] == ["cpu_d32-m0", "cpu_d32-m1"]
  assert [cs for _, cs in split] == [[x] for x in cells]


def test_a_steps_axis_gives_each_length_its_cells_programs_and_names():
  c = _config()
  assert grid.lengths(c) == (c.train.steps,)
  assert all(x.steps == c.train.steps and "-t" not in x.name for x in grid.cells(c)["cpu_d32"])
  c.grid.steps = (100, 400)
  cells = grid.cells(c)["cpu_d32"]
  per_length = len(cells) // 2
  assert [x.steps for x in cells] == [100] * per_length + [400] * per_length
  assert [x.member for x in cells[per_length:]] == list(range(per_length))
  assert len({x.name for x in cells}) == len(cells) and cells[0].name.startswith("cpu_d32-t100-")
  assert grid.programs(cells[per_length:], False) == [("cpu_d32-t400", cells[per_length:])]
  assert grid.programs(cells[:1], True) == [("cpu_d32-t100-m0", cells[:1])]
  indices = [x.index for cs in grid.cells(c).values() for x in cs]
  assert indices == list(range(len(indices)))


def test_run_names_say_size_task_frequency_seed_and_the_gap_the_grid_varies():
  cells = [x for cs in grid.cells(_config()).values() for x in cs]
  names = grid.run_names(cells)
  assert len(set(names.values())) == len(cells)
  assert names[0] == "size=cpu_d16,task=comparison,frequency=0.01,seed=0,gap=1"
  control = next(x for x in cells if x.is_control)
  assert names[control.index] == "size=cpu_d16,task=none,frequency=0.0,seed=0,gap=1"
  c = _config()
  c.grid.gap = (1,)
  c.task.jointly = True
  joint = grid.run_names(grid.cells(c)["cpu_d16"])
  assert joint[0] == "size=cpu_d16,task=comparison+addition,frequency=0.01,seed=0"
