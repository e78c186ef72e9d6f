"""A trained member of a pretraining run exported to the Hugging Face layout: its weights at the
latest checkpoint, the run's tokenizer and its special ids; what cannot be exported."""

import json
import subprocess
import sys
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

from rare_tasks.core.config import ConfigError
from rare_tasks.lm import export, hf, pretrain
from tests.lm.test_pretrain import STEPS, _final_state, text_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def text_run(shards, text_cache, tmp_path_factory):
  wd = tmp_path_factory.mktemp("export") / "run"
  pretrain.run(text_config(shards, text_cache), wd)
  return wd


def test_a_member_exports_with_its_trained_weights_and_tokenizer(text_run, tmp_path):
  folder, step = export.export(text_run, 1, tmp_path / "hf")
  assert step == STEPS
  model, params = hf.load(folder)
  assert model.spec.vocab_size == 384 and not model.spec.tie_embeddings
  trained = jax.tree.map(lambda a: np.asarray(a)[1], _final_state(text_run)["state"]["params"])
  chex.assert_trees_all_equal(params, trained)
  assert (folder / "tokenizer.json").read_text() == (text_run / "tokenizer.json").read_text()
  config = json.loads((folder / "config.json").read_text())
  assert (config["eos_token_id"], config["pad_token_id"]) == (0, 1)


def test_what_cannot_be_exported_is_refused(text_run, tmp_path):
  with pytest.raises(ConfigError, match=r"--member = 2: allowed: 0 \.\. 1"):
    export.export(text_run, 2, tmp_path / "hf")
  with pytest.raises(ConfigError, match="no config.json"):
    export.export(tmp_path / "nothing", 0, tmp_path / "hf")
  fresh = tmp_path / "fresh"
  fresh.mkdir()
  (fresh / "config.json").write_text((text_run / "config.json").read_text())
  with pytest.raises(ConfigError, match="no checkpoint yet"):
    export.export(fresh, 0, tmp_path / "hf")
  config = json.loads((text_run / "config.json").read_text())
  config["study"] = "lm_size_by_frequency"
  (fresh / "config.json").write_text(json.dumps(config))
  with pytest.raises(ConfigError, match="'lm_size_by_frequency' run; allowed: an lm_pretrain"):
    export.export(fresh, 0, tmp_path / "hf")


def test_the_command_line_is_one_line_on_a_mistake(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "experiments.export_hf",
                         f"--workdir={tmp_path}", "--member=0"], cwd=ROOT, capture_output=True,
                        text=True)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      f"error: --workdir = {str(tmp_path)!r}: no config.json; allowed: the work directory of "
      "an lm_pretrain run"]
