"""Bad text data through the command line: a corpus with a shard of lines that are not UTF-8
or not JSON trains, and the run's report counts them and names their file and line; after a
shard is rewritten in place (its size and modification time kept), the same command rebuilds
the cache entry and refuses to resume in one line, exit code 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.lm.conftest import documents, write_shards

ROOT = Path(__file__).resolve().parents[2]
# The smallest pretraining run on real text: one member of cpu_d16, two steps on one device.
TINY = ["--config=configs/lm_pretrain.py:smoke", "--cpu_devices=1", "--config.data.corpus=jsonl",
        "--config.data.vocab_size=320", "--config.data.seq_len=16",
        "--config.data.validation_rows=16", "--config.model.preset=cpu_d16",
        "--config.init_seeds=(0,)", "--config.train.batch_size=8", "--config.train.steps=2",
        "--config.train.warmup_steps=1", "--config.train.steps_per_dispatch=2",
        "--config.eval_every=2", "--config.checkpoint_interval_s=0"]


def _main(tmp_path: Path, shards: Path) -> subprocess.CompletedProcess:
  compiled = os.environ.get("JAX_COMPILATION_CACHE_DIR") or tmp_path / "compiled"
  cmd = [sys.executable, "-m", "experiments.main", *TINY, f"--workdir={tmp_path / 'wd'}",
         f"--config.data.path={shards}", f"--config.data.cache_dir={tmp_path / 'cache'}",
         f"--compilation_cache_dir={compiled}"]
  return subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                        capture_output=True, text=True, timeout=300)


def test_bad_lines_are_reported_by_file_and_a_changed_shard_refuses_the_resume(tmp_path):
  shards = tmp_path / "shards"
  write_shards(shards, documents(120))
  (shards / "d.jsonl").write_bytes(b'{"text": "caf\xe9"}\nnot json\n')
  run = _main(tmp_path, shards)
  assert run.returncode == 0, run.stderr
  wd = tmp_path / "wd"
  assert ("120 documents (skipped: 1 not JSON (d.jsonl line 2), 1 not UTF-8 (d.jsonl line 1))"
          in (wd / "summary.md").read_text())
  source = json.loads((wd / "run.json").read_text())["source"]
  assert source["skipped_where"] == {"not JSON": ["d.jsonl line 2"],
                                     "not UTF-8": ["d.jsonl line 1"]}
  assert "skipped 1 not JSON (d.jsonl line 2), 1 not UTF-8 (d.jsonl line 1)" in run.stderr

  shard = shards / "a.jsonl"
  st = shard.stat()
  shard.write_bytes(shard.read_bytes().replace(b"task", b"tusk", 1))
  os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
  again = _main(tmp_path, shards)
  assert again.returncode == 2, again.stderr
  assert "1 corpus file(s) added, removed or changed: a.jsonl): rebuilding it" in again.stderr
  errors = [line for line in again.stderr.splitlines() if line.startswith("error: ")]
  assert errors == [again.stderr.strip().splitlines()[-1]] and "Traceback" not in again.stderr
  assert errors[0].startswith(
      f"error: config.data.path = {str(shards.resolve())!r}: allowed: the corpus this run's "
      f"checkpoints were trained on (fingerprint {source['fingerprint']}, now ")
