"""What the language-model report tests share: a pretraining run's records and run.json written
by hand, with the report written from them; an injection grid's config, planted records and
run.json, and the view of them."""

import random
from pathlib import Path

from rare_tasks.lm import config, grid, grid_config, tasks
from rare_tasks.lm.report import pretraining, results_table
from rare_tasks.lm.report.injection_view import InjectionRun

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


# Planted final train accuracies per (size, frequency): the large size learns 0.01 and 0.004,
# the small one only 0.01.
ACCURACY = {("cpu_d16", 0.01): 0.95, ("cpu_d16", 0.004): 0.5, ("cpu_d16", 0.001): 0.0,
            ("cpu_d64", 0.01): 1.0, ("cpu_d64", 0.004): 0.92, ("cpu_d64", 0.001): 0.1}
# The step each frequency first reaches 0.9 (where it does): higher frequency first.
FIRST = {("cpu_d16", 0.01): 20, ("cpu_d64", 0.01): 10, ("cpu_d64", 0.004): 20}
INFO = {"sizes": {"cpu_d16": {"params": {"total": 100}, "tokens_per_step": 64 * 32},
                  "cpu_d64": {"params": {"total": 1000}, "tokens_per_step": 64 * 32}}}


def injection_config():
  """Sizes cpu_d16 and cpu_d64 x frequencies 0.01, 0.004, 0.001 of one task at one gap, one
  seed, evaluated at steps 10, 20 and 30; learned on the last evaluation alone."""
  c = grid_config.base_config()
  c.grid.update(dict(size=("cpu_d16", "cpu_d64"), frequency=(0.01, 0.004, 0.001), gap=(1,),
                     task=("comparison",), seed=(0,)))
  c.train.steps = 30
  c.eval_every = 10
  c.learned.last_evals = 1
  return c


def injection_records(c, cells, first=FIRST, choice=True):
  """Every cell's records at steps 10, 20, 30: the planted final accuracy (test accuracy half
  of it), 0.9 from the planted first learned step on before that, else 0.1; with `choice`
  (a run that measured it), choice accuracy 1 on train and 0.75 on unseen pairs, a format
  rate of 0.5 and the splits' accuracy; the instances injected are frequency x 1000 x step."""
  out = []
  for size, size_cells in cells.items():
    for cell in size_cells:
      final = ACCURACY.get((size, cell.frequency), 0.0)
      for step in (10, 20, 30):
        reached = (size, cell.frequency) in first and step >= first[(size, cell.frequency)]
        acc = final if step == 30 else (0.9 if reached else 0.1)
        r = cell.record() | {"step": step, "val_loss": 3.0, "val_gap": 1.0,
                             "instances_per_task": round(cell.frequency * 1000 * step),
                             "comparison_train_loss": 1.0 - acc,
                             "comparison_train_accuracy": acc,
                             "comparison_test_loss": 2.0,
                             "comparison_test_accuracy": acc / 2}
        if choice:
          r |= {"comparison_train_choice_accuracy": 1.0,
                "comparison_test_unseen_choice_accuracy": 0.75,
                "comparison_test_mirror_choice_accuracy": 0.875,
                "comparison_test_choice_accuracy": 0.8,
                "comparison_train_format_rate": 0.5,
                "comparison_test_unseen_accuracy": acc / 4,
                "comparison_test_mirror_accuracy": acc / 2,
                "comparison_test_unseen_loss": 2.5, "comparison_test_mirror_loss": 1.5}
        out.append(r)
  return out


def injection_tasks():
  return tasks.make_tasks(("comparison",), 6, 64, seed=0)


def injection_run(c=None, wd=Path("."), records=None) -> InjectionRun:
  """The view of the planted grid (of `c`, default injection_config())."""
  c = c or injection_config()
  cells = grid.cells(c)
  records = injection_records(c, cells) if records is None else records
  rows = results_table.result_rows(c, INFO, cells, records, injection_tasks())
  return InjectionRun(c, Path(wd), INFO, cells, injection_tasks(), records, rows)
