"""Tests of rare_tasks/lm/program.py: the program's chunks and evaluations from its config,
records built from the chunk outputs, the inputs and the measurements a study adds, the final
records found in metrics.jsonl, a checkpoint restored, and the validation batch size."""

import jax
import numpy as np

from rare_tasks.core import workdir
from rare_tasks.core.checkpoints import GroupCheckpoints
from rare_tasks.lm import config as lm_config
from rare_tasks.lm import data, specs
from rare_tasks.lm.program import TextProgram, restore, rows_per_eval


def _config():
  c = lm_config.base_config()
  c.model.preset = "cpu_d16"
  c.data.update(dict(vocab_size=64, seq_len=16, num_states=64, validation_rows=16))
  c.train.update(dict(steps=6, warmup_steps=1, steps_per_dispatch=2, batch_size=8))
  c.eval_every = 3
  return lm_config.resolve(c, "cpu")


class Inputs:
  def __init__(self):
    self.calls = []

  def start(self, step):
    self.calls.append(("start", step))

  def rows(self, first_step, num_steps):
    self.calls.append(("rows", first_step, num_steps))
    return None

  def record(self, member, step):
    return {"injected_by": step * 10 + member}


class Measurement:
  def measure(self, trainer, state):
    return jax.numpy.arange(trainer.num_members) * 2.0

  def record(self, member, measured):
    return {"twice": float(measured[member])}


def _program(wd, **kwargs):
  c = _config()
  source = data.source_of(c)
  mesh = specs.ensemble_mesh(c, 2, jax.devices()[:2], 1)
  trainer = specs.ensemble_trainer(c, source.vocab_size, 2, mesh)
  return TextProgram("p", c, wd, source, trainer, members=[{"cell": 7}, {"cell": 9}],
                     seeds=(0, 1), metrics_key=("cell", "step"), checkpoint_dir="ckpt",
                     **kwargs)


def test_chunks_end_at_dispatches_and_evaluations():
  p = _program(None)
  assert p.boundaries() == [2, 3, 4, 6] and p.evaluation_steps() == [3, 6]


def test_records_hold_identity_losses_inputs_and_measurements(tmp_path):
  inputs = Inputs()
  p = _program(tmp_path, inputs=inputs, measurements=[Measurement()])
  state = p.init()
  p.start(0)
  state, out1 = p.train(state, 0, 2)
  state, out2 = p.train(state, 2, 1)
  assert inputs.calls == [("start", 0), ("rows", 0, 2), ("rows", 2, 1)]
  records = p.records(3, [out1, out2], jax.device_get(p.evaluate(state)))
  ce = np.concatenate([np.asarray(out1["ce"]), np.asarray(out2["ce"])])
  assert [r["cell"] for r in records] == [7, 9]
  for m, r in enumerate(records):
    assert r["step"] == 3 and r["tokens"] == 3 * 8 * 16
    assert r["train_loss"] == float(np.mean(ce[:, m]))
    assert r["grad_norm"] == float(np.asarray(out2["grad_norm"])[-1, m])
    assert r["injected_by"] == 30 + m and r["twice"] == 2.0 * m
    assert r["val_gap"] == r["val_loss"] - p.floor
  again = p.records(3, None, jax.device_get(p.evaluate(state)))
  assert again[0]["train_loss"] is None and again[0]["val_loss"] == records[0]["val_loss"]
  assert "val loss" in p.describe(records)


def test_final_records_are_found_per_member(tmp_path):
  p = _program(tmp_path)
  workdir.append_metrics(tmp_path, [{"cell": 7, "step": 6}, {"cell": 9, "step": 3}])
  assert not p.final_recorded()
  workdir.append_metrics(tmp_path, [{"cell": 9, "step": 6}])
  assert p.final_recorded()


def test_a_checkpoint_restores_the_state(tmp_path):
  p = _program(tmp_path)
  state = p.init()
  ckpt = GroupCheckpoints(tmp_path / p.checkpoint_dir)
  ckpt.save(4, p.checkpoint(state, 4))
  back = restore(ckpt, p.trainer)
  ckpt.close()
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(back), jax.device_get(state))


def test_validation_batches_divide_the_rows_and_the_mesh_split():
  assert rows_per_eval(256, 32, 1) == 32
  assert rows_per_eval(48, 32, 4) == 24
  assert rows_per_eval(16, 64, 8) == 16
  assert rows_per_eval(10, 32, 4) == 4  # no multiple of 4 divides 10: the split itself


def test_extra_boundaries_split_chunks_before_the_updates_a_callback_measures():
  p = _program(None, extra_boundaries=(1, 5, 6, 0, 9))
  assert p.boundaries() == [1, 2, 3, 4, 5, 6]


class Trace:
  def arrays(self):
    return (jax.numpy.zeros((1, 2, 2), jax.numpy.int32), jax.numpy.ones((1, 2), jax.numpy.int32))

  def record(self, member, first, traced):
    return {"first": first, "traced": None if traced is None else traced[:, 0].tolist()}


def test_a_trace_is_traced_by_every_chunk_and_recorded_per_member(tmp_path):
  p = _program(tmp_path, trace=Trace())
  state = p.init()
  p.start(0)
  state, out1 = p.train(state, 0, 2)
  state, out2 = p.train(state, 2, 1)
  assert np.asarray(out1["task_trace"]).shape == (2, 2, 1)
  records = p.records(3, [out1, out2], jax.device_get(p.evaluate(state)))
  traced = np.concatenate([np.asarray(out1["task_trace"]), np.asarray(out2["task_trace"])])
  for m, r in enumerate(records):
    assert r["first"] == 1 and r["traced"] == traced[:, m, 0].tolist()
  assert p.records(3, None, jax.device_get(p.evaluate(state)))[0]["traced"] is None
