"""The pretraining study end to end on a tiny config: the work directory, kill and resume
bit-identical, a finished run reported without training, 1 vs 8 devices, bad input refused."""

import json
import shutil
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

from rare_tasks.core import tensorboard, workdir
from rare_tasks.core.checkpoints import GroupCheckpoints
from rare_tasks.core.config import ConfigError
from rare_tasks.core.workdir import WorkdirError
from rare_tasks.lm import config as lm_config
from rare_tasks.lm import ladder, pretrain, sharding, specs
from rare_tasks.lm.model import Model
from rare_tasks.lm.program import NOT_HEADLINE
from rare_tasks.lm.trainer import Trainer
from tests import processes
from tests.callbacks import after_chunk
from tests.tensorboard_events import numbers_by_step, purge_steps, runs, shown

STEPS = 8
ROOT = Path(__file__).resolve().parents[2]


def tiny_config():
  c = lm_config.base_config()
  c.model.preset = "cpu_d16"
  c.init_seeds = (0, 1)
  c.data.update(dict(vocab_size=384, seq_len=16, num_states=64, validation_rows=16))
  c.train.update(dict(steps=STEPS, warmup_steps=2, steps_per_dispatch=2, batch_size=8))
  c.eval_every = 4
  c.checkpoint_interval_s = 0.0
  return c


class Killed(Exception):
  pass


def _final_state(wd):
  ckpt = GroupCheckpoints(wd / specs.CHECKPOINTS_DIR)
  try:
    assert ckpt.latest_step() == STEPS
    like = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype),
                        {"state": _abstract(), "data_position": np.zeros((), np.int64)})
    return ckpt.restore(like)
  finally:
    ckpt.close()


def _abstract():
  c = lm_config.resolve(tiny_config(), "cpu")
  spec = specs.model_spec(c, c.data.vocab_size)
  mesh = sharding.make_mesh(jax.devices()[:1], 1, 1)
  return Trainer(Model(spec), specs.train_spec(c), 2, mesh).abstract_state


def _losses(wd):
  return [(r["step"], r["member"], r["train_loss"], r["val_loss"])
          for r in workdir.read_metrics(wd, pretrain.METRICS_KEY)]


def logged_config():
  """The tiny config logging to TensorBoard."""
  c = tiny_config()
  c.log.tensorboard = True
  return c


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  wd = tmp_path_factory.mktemp("lm") / "run"
  report = pretrain.run(logged_config(), wd)
  return wd, report


def test_a_run_writes_a_self_describing_work_directory(uninterrupted):
  wd, report = uninterrupted
  assert report.trained_steps == STEPS
  for name in ("config.json", "metrics.jsonl", "run.json", "summary.md", "figures/loss.png"):
    assert (wd / name).exists(), name
  config = json.loads((wd / "config.json").read_text())
  shape = ladder.PRESETS["cpu_d16"].shape
  assert config["model"]["d_model"] == shape.d_model  # the preset's values, resolved
  assert config["model"]["num_layers"] == shape.num_layers and config["model"]["dtype"] == "float32"
  assert config["train"]["learning_rate"] == pytest.approx(
      ladder.default_learning_rate(ladder.PRESETS["cpu_d16"].nominal_size()))
  info = json.loads((wd / "run.json").read_text())
  assert info["params"]["total"] == ladder.total_params(shape, 384)
  assert info["params"]["non_embedding"] == ladder.non_embedding_params(shape)
  records = workdir.read_metrics(wd, pretrain.METRICS_KEY)
  assert [(r["step"], r["member"]) for r in records] == [(4, 0), (8, 0), (4, 1), (8, 1)]
  for r in records:
    for key in ("step", "member", "tokens", "train_loss", "val_loss", "tokens_per_s"):
      assert isinstance(r[key], (int, float)), key
    assert r["tokens"] == r["step"] * 8 * 16
    assert r["val_gap"] == pytest.approx(r["val_loss"] - info["loss_floor"])
  assert records[0]["val_loss"] != records[2]["val_loss"]  # two members, two models
  summary = (wd / "summary.md").read_text()
  assert "cpu_d16" in summary and f"{info['params']['total']:,}" in summary
  assert (wd / "figures/loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_killed_run_resumes_bit_identical(uninterrupted, tmp_path):
  wd, _ = uninterrupted
  killed = tmp_path / "killed"

  def kill(step):
    if step == 6:  # after the checkpoint at 4, before the next
      raise Killed

  with pytest.raises(Killed):
    pretrain.run(logged_config(), killed, callbacks=[after_chunk(lambda _, step: kill(step))])
  resumed = pretrain.run(logged_config(), killed)
  assert resumed.trained_steps == STEPS - 4
  assert _losses(killed) == _losses(wd)
  _check_tensorboard(killed)
  for name in runs(killed / tensorboard.DIR):
    assert purge_steps(killed / tensorboard.DIR / name) == [1, 5]  # each invocation's first step
  a, b = _final_state(wd), _final_state(killed)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def _check_tensorboard(wd):
  """One TensorBoard run per member, named by size and seed, showing each step of its records'
  numbers once (golden), but its identity and bookkeeping."""
  board = wd / tensorboard.DIR
  assert runs(board) == ["size=cpu_d16,seed=0", "size=cpu_d16,seed=1"]
  records = workdir.read_metrics(wd, pretrain.METRICS_KEY)
  for member in (0, 1):
    scalars = shown(board / f"size=cpu_d16,seed={member}")
    mine = [r for r in records if r["member"] == member]
    assert scalars == numbers_by_step(mine, {"member", "init_seed", *NOT_HEADLINE})
    assert set(scalars) == {"train_loss", "train_z_loss", "val_loss", "val_gap", "grad_norm",
                            "learning_rate", "tokens_per_s"}
    assert sorted(scalars["val_loss"]) == [4, 8]


def test_tensorboard_shows_each_members_headline_numbers(uninterrupted):
  _check_tensorboard(uninterrupted[0])


def test_a_finished_run_reports_without_training(uninterrupted, monkeypatch):
  wd, _ = uninterrupted
  before = _losses(wd)

  def no_training(*args, **kwargs):
    raise AssertionError("a finished run trained again")

  monkeypatch.setattr(Trainer, "chunk", no_training)
  monkeypatch.setattr(Trainer, "init", no_training)
  report = pretrain.run(tiny_config(), wd)
  assert report.trained_steps == 0 and _losses(wd) == before
  assert report.summary["final_val_loss"] == [r[3] for r in before if r[0] == STEPS]


def test_a_lost_final_record_is_measured_again_from_the_checkpoint(uninterrupted, tmp_path):
  wd, _ = uninterrupted
  copy = tmp_path / "copy"
  shutil.copytree(wd, copy)
  lines = (copy / "metrics.jsonl").read_text().splitlines()
  kept = [line for line in lines if json.loads(line)["step"] != STEPS]
  (copy / "metrics.jsonl").write_text("\n".join(kept) + "\n")
  assert pretrain.run(tiny_config(), copy).trained_steps == 0
  finals = {r["member"]: r for r in workdir.read_metrics(copy, pretrain.METRICS_KEY)
            if r["step"] == STEPS}
  want = {m: v for s, m, _, v in _losses(wd) if s == STEPS}
  assert {m: r["val_loss"] for m, r in finals.items()} == want
  assert all(r["train_loss"] is None for r in finals.values())


FIXTURES = ROOT / "tests" / "fixtures" / "lm_workdir_before_engine"


def test_a_work_directory_written_before_the_engine_re_reports_and_resumes(tmp_path):
  """Written on one device by the pretraining loop the engine replaced: re-reported without
  training, and the interrupted one resumed on one device to the same losses, to a few float32
  roundings (today's step selects between the updated and the previous state, for divergence,
  which changes how XLA compiles the update; a run and its own resume agree bit for bit)."""
  c = tiny_config()
  c.data.vocab_size = 64
  finished, interrupted = tmp_path / "finished", tmp_path / "interrupted"
  shutil.copytree(FIXTURES / "pretrain_finished", finished)
  shutil.copytree(FIXTURES / "pretrain_interrupted", interrupted)
  stored = _losses(finished)
  assert pretrain.run(c, finished).trained_steps == 0 and _losses(finished) == stored
  assert (finished / "figures/loss.png").exists()
  one = jax.devices()[:1]
  assert pretrain.run(c, interrupted, devices=one).trained_steps == STEPS - 4
  resumed = _losses(interrupted)
  assert [r[:2] for r in resumed] == [r[:2] for r in stored]
  np.testing.assert_allclose([r[2:] for r in resumed], [r[2:] for r in stored], rtol=2e-5)


def test_one_device_gives_the_same_run_as_eight(uninterrupted, tmp_path):
  wd, _ = uninterrupted
  pretrain.run(tiny_config(), tmp_path / "one", devices=jax.devices()[:1])
  one, eight = _losses(tmp_path / "one"), _losses(wd)
  assert [r[:2] for r in one] == [r[:2] for r in eight]
  np.testing.assert_allclose([r[2:] for r in one], [r[2:] for r in eight], rtol=2e-5)


def _tiny_flags() -> list[str]:
  """tiny_config() as command-line overrides of configs/lm_pretrain.py."""
  c = tiny_config()
  fields = {"model.preset": c.model.preset, "init_seeds": "(0,1)", "eval_every": c.eval_every,
            "checkpoint_interval_s": 0.0,
            **{f"data.{k}": c.data[k] for k in ("vocab_size", "seq_len", "num_states",
                                                "validation_rows")},
            **{f"train.{k}": c.train[k] for k in ("steps", "warmup_steps",
                                                  "steps_per_dispatch", "batch_size")}}
  return ["--config=configs/lm_pretrain.py"] + [f"--config.{k}={v}" for k, v in fields.items()]


def test_two_processes_of_four_devices_give_the_run_of_one_process_of_eight(uninterrupted,
                                                                            tmp_path):
  wd, _ = uninterrupted
  procs = processes.start([*_tiny_flags(), f"--workdir={tmp_path / 'wd'}"])
  outs = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
  assert "summary.md" in outs[0][0] and "summary.md" not in outs[1][0]  # process 0 reports
  two, one = _losses(tmp_path / "wd"), _losses(wd)
  assert [r[:2] for r in two] == [r[:2] for r in one]  # each record written once
  np.testing.assert_allclose([r[2:] for r in two], [r[2:] for r in one], rtol=2e-5)
  assert _final_state(tmp_path / "wd")["data_position"] == STEPS


def test_another_config_in_the_same_work_directory_is_refused(uninterrupted):
  wd, _ = uninterrupted
  c = tiny_config()
  c.train.learning_rate = 1e-3
  with pytest.raises(WorkdirError, match="learning_rate"):
    pretrain.run(c, wd)


@pytest.mark.parametrize("change,field", [
    (lambda c: c.model.update(dict(preset="5M")), "model.preset"),
    (lambda c: c.model.update(dict(block="olmo3")), "model.block"),
    (lambda c: c.data.update(dict(corpus="dolma")), "data.corpus"),
    (lambda c: c.model.update(dict(d_model=18, num_heads=4)), "model.num_heads"),
    (lambda c: c.model.update(dict(d_model=20, num_heads=4)), "model.num_heads"),
    (lambda c: c.data.update(dict(seq_len=3)), "data.seq_len"),
    (lambda c: c.train.update(dict(batch_size=6)), "train.batch_size"),
    (lambda c: c.update(dict(init_seeds=tuple(range(8)))) or c.model.update(dict(preset="4B")),
     "model.preset"),
    (lambda c: c.data.update(dict(path="/data/dolma")), "data.path"),
    (lambda c: c.data.update(dict(tokenizer="tok.json")), "data.tokenizer"),
    (lambda c: c.data.update(dict(corpus="jsonl", path="/nonexistent")), "data.path"),
])
def test_bad_input_is_refused_before_any_compute(change, field, tmp_path):
  c = tiny_config()
  change(c)
  with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
    pretrain.run(c, tmp_path / "bad")
  assert not (tmp_path / "bad").exists()


def text_config(shards, cache):
  c = tiny_config()
  c.data.update(dict(corpus="jsonl", path=str(shards), cache_dir=str(cache), vocab_size=320))
  return c


def test_a_run_on_real_text_keeps_its_tokenizer_and_reports_the_corpus(shards, text_cache,
                                                                        tmp_path):
  # Resuming needs batch k to be a pure function of (seed, k), tested in tests/lm/data/test_text.
  wd = tmp_path / "run"
  pretrain.run(text_config(shards, text_cache), wd)
  info = json.loads((wd / "run.json").read_text())
  src = info["source"]
  assert src["corpus"] == "jsonl" and src["vocab_size"] == 384 and info["loss_floor"] is None
  assert info["params"]["total"] == ladder.total_params(ladder.PRESETS["cpu_d16"].shape, 384)
  kept = (wd / "tokenizer.json").read_text()
  assert kept == (Path(src["cache"]) / "tokenizer.json").read_text()
  summary = (wd / "summary.md").read_text()
  assert f"tokenizer: trained byte-level BPE, {src['tokenizer_size']} tokens" in summary
  assert f"{src['train_rows']:,} rows" in summary and "vocabulary 384" in summary
  records = workdir.read_metrics(wd, pretrain.METRICS_KEY)
  assert all(r["val_gap"] is None and r["val_loss"] < np.log(384) for r in records)
  # The same command again only reports; a corpus changed since its checkpoints is refused.
  assert pretrain.run(text_config(shards, text_cache), wd).trained_steps == 0
  run_json = json.loads((wd / "run.json").read_text())
  run_json["source"]["fingerprint"] = "0123456789abcdef"
  (wd / "run.json").write_text(json.dumps(run_json))
  with pytest.raises(ConfigError, match=r"data\.path = .*fingerprint 0123456789abcdef"):
    pretrain.run(text_config(shards, text_cache), wd)


def test_a_run_starts_from_a_hugging_face_checkpoint(tmp_path, monkeypatch):
  from rare_tasks.lm import hf
  c = lm_config.resolve(tiny_config(), "cpu")
  spec = specs.model_spec(c, c.data.vocab_size)
  params = jax.jit(Model(spec).init)(jax.random.key(7))
  hf.save(tmp_path / "ckpt", Model(spec), params)
  c.model.init_from, c.init_seeds = str(tmp_path / "ckpt"), (3,)
  loaded = specs.initial_params(c, spec)
  mesh = sharding.make_mesh(jax.devices()[:1], 1, 1)
  state = Trainer(Model(spec), specs.train_spec(c), 1, mesh).start_from(loaded)
  for a, b in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(a)[0], np.asarray(b))
  assert all(float(np.abs(x).max()) == 0 for x in jax.tree.leaves(state["opt"])
             if np.asarray(x).dtype == np.float32)  # a fresh AdamW state

  # The study hands exactly these parameters to the trainer, and never draws a random init.
  started = []

  def start_from(self, params):
    started.append(params)
    raise Killed

  def no_random_init(*args, **kwargs):
    raise AssertionError("a run from a checkpoint drew a random init")

  monkeypatch.setattr(Trainer, "start_from", start_from)
  monkeypatch.setattr(Trainer, "init", no_random_init)
  with pytest.raises(Killed):
    pretrain.run(c, tmp_path / "run")
  chex.assert_trees_all_equal(started[0], jax.device_get(params))


@pytest.mark.parametrize("change,match", [
    (lambda c: c.data.update(dict(vocab_size=512)), r"init_from = .*vocab_size 384: this run's"),
    (lambda c: c.model.update(dict(tie_embeddings=True)), "untied embeddings where the run is"),
    (lambda c: c.update(dict(init_seeds=(0, 1))), r"init_seeds = \(0, 1\)"),
    (lambda c: c.model.update(dict(init_from="/nonexistent")), r"init_from = '/nonexistent'"),
])
def test_a_checkpoint_the_run_cannot_hold_is_refused_before_any_compute(change, match, tmp_path):
  from rare_tasks.lm import hf
  c = lm_config.resolve(tiny_config(), "cpu")
  spec = specs.model_spec(c, c.data.vocab_size)
  hf.save(tmp_path / "ckpt", Model(spec), jax.jit(Model(spec).init)(jax.random.key(0)))
  c = tiny_config()
  c.init_seeds = (0,)
  c.model.init_from = str(tmp_path / "ckpt")
  change(c)
  with pytest.raises(ConfigError, match=match):
    pretrain.run(c, tmp_path / "bad")
  assert not (tmp_path / "bad").exists()
