"""What the language-model report tests share: a pretraining run's records and run.json written
by hand, with the report written from them."""

import random

from rare_tasks.lm import config
from rare_tasks.lm.report import pretraining

FLOOR = 1.2345
# (member, step) -> (val_loss, train_loss, tokens_per_s)
VALUES = {
    (0, 10): (3.9, 4.1, 100.0), (0, 20): (2.9, 3.1, 200.0), (0, 30): (2.3456, 2.4111, 300.0),
    (1, 10): (4.0, 4.2, 150.0), (1, 20): (3.0, 3.2, 400.0), (1, 30): (2.5678, 2.6222, 1000.0),
}
SEEDS = {0: 11, 1: 17}


def _record(member: int, step: int) -> dict:
  val, train, rate = VALUES[member, step]
  return {"step": step, "member": member, "init_seed": SEEDS[member], "tokens": step * 2048,
          "train_loss": train, "val_loss": val, "val_gap": val - FLOOR, "tokens_per_s": rate,
          "model_tokens_per_s": 2 * rate, "learning_rate": 1e-3 * step / 30,
          "train_z_loss": 1e-4, "grad_norm": 0.5}


def pretraining_records() -> list[dict]:
  """Two members evaluated at steps 10, 20 and 30, in shuffled order."""
  records = [_record(m, s) for (m, s) in VALUES]
  random.Random(0).shuffle(records)  # the report may not rely on the file's order
  return records


def pretraining_info(floor=FLOOR) -> dict:
  """run.json of a synthetic-source run on the CPU."""
  return {
      "params": {"total": 1_234_567, "non_embedding": 98_765, "nominal": 1_700_000.0,
                 "nominal_counts": "non-embedding + one 50304-row embedding"},
      "flops_per_token": 6.5e5, "tokens_per_step": 2048,
      "source": {"num_states": 2048, "entropy_rate": 1.5, "kind": "markov"},
      "loss_floor": floor, "mesh": {"member": 2, "data": 4, "fsdp": 1}, "platform": "cpu",
      "memory": "parameters, gradients and AdamW state: 0.001 GiB of 23 GiB host memory",
  }


def pretraining_config():
  return config.resolve(config.base_config(), "cpu")


def write_pretraining(tmp_path, records, info=None):
  """The pretraining report written into tmp_path: (config, numbers returned, summary.md)."""
  c = pretraining_config()
  (tmp_path / "figures").mkdir(exist_ok=True)
  numbers = pretraining.write(tmp_path, c, info or pretraining_info(), records)
  return c, numbers, (tmp_path / "summary.md").read_text()
