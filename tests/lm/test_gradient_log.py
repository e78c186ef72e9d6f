"""The gradient decomposition's log: which updates it measures, chunks that end before them, and
its records: an ensemble member's equal the same model's alone, the injection flags follow the
plan, and a control's task part is zero."""

from fractions import Fraction

import jax
import numpy as np

from rare_tasks.core import engine, workdir
from rare_tasks.lm import config as lm_config
from rare_tasks.lm import data, gradient_log, injections, specs, tasks
from rare_tasks.lm.trainer import trained_params

TASKS = tasks.make_tasks(("comparison",), 6, 64, 0, 63, False, "ordered")
BURSTS = injections.Injection(tasks=(0,), rate=Fraction(1), gap=4, withhold_steps=2, seed=0)
CONTROL = injections.Injection(tasks=(), rate=Fraction(0))


def test_the_measured_updates_are_evaluations_bursts_and_halfway_between():
  steady = injections.Injection(tasks=(0,), rate=Fraction(1, 2), gap=1)
  assert gradient_log.measured_updates([steady, CONTROL], 20, [5, 10, 20]) == [5, 10]
  assert gradient_log.measured_updates([BURSTS, CONTROL], 14, [7, 14]) == [
      2, 4, 6, 7, 8, 10, 12]


def _config():
  c = lm_config.base_config()
  c.model.preset = "cpu_d16"
  c.data.update(dict(vocab_size=64, seq_len=16, num_states=64, validation_rows=16))
  c.train.update(dict(steps=8, warmup_steps=0, steps_per_dispatch=4, batch_size=8))
  c.eval_every = 4
  return lm_config.resolve(c, "cpu")


def _log(tmp_path, seeds, plans, updates=(2, 6)):
  c = _config()
  source = data.source_of(c)
  mesh = specs.ensemble_mesh(c, len(seeds), jax.devices()[:1], 1)
  trainer = specs.ensemble_trainer(c, source.vocab_size, len(seeds), mesh)
  log = gradient_log.GradientLog(tmp_path, trainer, source, [{"cell": s} for s in seeds],
                                 plans, TASKS, 8, source.eos_id, (0.25, 1.0), updates)
  return log, trainer


def test_a_member_is_measured_as_the_same_model_alone_and_flags_its_injections(tmp_path):
  log, trainer = _log(tmp_path, (3, 5), [BURSTS, CONTROL])
  state = trainer.init(np.array([3, 5]))
  records = log.measure(state, 6)
  assert [r["cell"] for r in records] == [3, 5]
  assert records[0]["injection_step"] and not records[1]["injection_step"]
  assert records[0]["top_k"] == [0.25, 1.0] and records[0]["support_dim"] == [3 * 16 * 16,
                                                                               3 * 16 * 64]
  assert records[1]["comparison_norm_gt"] == [0.0, 0.0]
  assert records[0]["comparison_norm_gt"][0] > 0
  alone, alone_trainer = _log(tmp_path, (3,), [BURSTS])
  alone_state = alone_trainer.start_from(trained_params(state, 0))
  (mine,) = alone.measure(alone_state, 6)
  for key in mine:
    if key.startswith("comparison_"):
      np.testing.assert_allclose(mine[key], records[0][key], rtol=2e-5, atol=1e-7)
  # Between bursts (update 5 carries nothing) the flag is off.
  assert not log.measure(state, 5)[0]["injection_step"]


def test_the_callback_appends_records_after_the_chunks_that_end_before_measured_updates(
    tmp_path):
  log, trainer = _log(tmp_path, (0, 1), [BURSTS, CONTROL], updates=(4,))
  state = trainer.init(np.array([0, 1]))
  callback = log.callback()
  assert callback.when == "chunk"
  callback.fn(engine.Event(None, 2, 1, state=state))
  assert not (tmp_path / gradient_log.FILE).exists()
  callback.fn(engine.Event(None, 4, 3, state=state))
  callback.fn(engine.Event(None, 4, 3, state=state))  # measured again after a resume
  got = workdir.read_metrics(tmp_path, gradient_log.KEY, gradient_log.FILE)
  assert [(r["cell"], r["step"]) for r in got] == [(0, 4), (1, 4)]
