"""Tests of rare_tasks/lm/specs.py: the specs a resolved config gives, the ensemble's mesh and
its refusals, the run's info, and the files that describe the text."""

import json
import re

import jax
import pytest

from rare_tasks.core.config import ConfigError
from rare_tasks.lm import config as lm_config
from rare_tasks.lm import data, ladder, specs


def _resolved(**train):
  c = lm_config.base_config()
  c.model.preset = "cpu_d16"
  c.data.update(dict(vocab_size=64, seq_len=16, num_states=64, validation_rows=16))
  c.train.update(dict(steps=8, batch_size=8, **train))
  c.eval_every = 4
  return lm_config.resolve(c, "cpu")


def test_the_specs_carry_every_model_and_optimisation_field():
  c = _resolved(learning_rate=1e-3, weight_decay=0.1, grad_clip=0.5)
  m = specs.model_spec(c, 96)
  assert m.vocab_size == 96 and m.shape == lm_config.shape_of(c)
  assert (m.block, m.dtype, m.tie_embeddings) == ("olmo2", "float32", False)
  t = specs.train_spec(c)
  assert (t.steps, t.learning_rate, t.weight_decay, t.grad_clip) == (8, 1e-3, 0.1, 0.5)


def test_the_ensemble_mesh_splits_members_and_fsdp_over_the_devices():
  c = _resolved()
  mesh = specs.ensemble_mesh(c, 2, jax.devices(), 2)
  assert dict(mesh.shape) == {"member": 2, "data": 2, "fsdp": 2}
  trainer = specs.ensemble_trainer(c, 64, 2, mesh)
  assert trainer.num_members == 2 and trainer.mesh is mesh
  with pytest.raises(ConfigError, match=re.escape("config.mesh.fsdp = 3")):
    specs.ensemble_mesh(c, 2, jax.devices(), 3)
  c.train.batch_size = 6  # the data x fsdp axes split the rows 4 ways
  with pytest.raises(ConfigError, match=re.escape("config.train.batch_size = 6")):
    specs.ensemble_mesh(c, 2, jax.devices(), 2)


def test_without_init_from_there_are_no_initial_params():
  c = _resolved()
  assert specs.checkpoint_of(c) is None
  assert specs.initial_params(c, specs.model_spec(c, 64)) is None


def test_an_unreadable_init_from_names_the_field(tmp_path):
  c = _resolved()
  c.model.init_from = str(tmp_path / "missing")
  with pytest.raises(ConfigError, match=r"^config\.model\.init_from = "):
    specs.checkpoint_of(c)


def test_run_info_counts_parameters_and_tokens_and_keep_text_writes_it(tmp_path):
  c = _resolved()
  source = data.source_of(c)
  trainer = specs.ensemble_trainer(c, source.vocab_size, 1,
                                   specs.ensemble_mesh(c, 1, jax.devices()[:1], 1))
  info = specs.run_info(c, trainer.model.spec, source, trainer.mesh)
  spec = trainer.model.spec
  assert info["params"]["total"] == ladder.total_params(spec.shape, 64, spec.block, False)
  assert info["tokens_per_step"] == 8 * 16
  assert info["mesh"] == {"member": 1, "data": 1, "fsdp": 1}
  specs.keep_text(tmp_path, source, info)
  assert json.loads((tmp_path / specs.RUN_FILE).read_text())["tokens_per_step"] == 128
  assert not (tmp_path / data.TOKENIZER_FILE).exists()  # the synthetic source has none
