"""The gradient decomposition during pretraining (`rare_tasks.lm.gradients`), as an engine
callback: after a chunk that ends before an update to measure, the update's own batch and
injected rows are decomposed for every member and appended to gradients.jsonl.

Updates measured: every evaluation's next update and, for cells injected in bursts (a gap of at
least 2), every burst update ("at an injection") and the update halfway to the next burst
("between injections"). A record per member and measured update: cell, step (the update's
index, the parameters after that many updates), injection_step (whether the update carries this
member's instances), top_k, support_dim, and per task `<task>_<value>` (a list over top_k) for
each value of `rare_tasks.lm.gradients.COSINES` and NORMS. A resumed run measures again what
follows its checkpoint; a reader keeps the latest record per (cell, step).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rare_tasks import injection
from rare_tasks.core import engine, workdir
from rare_tasks.core import mesh as meshes
from rare_tasks.lm import gradients, injections, sharding
from rare_tasks.lm.tasks import Task
from rare_tasks.lm.trainer import with_injected

FILE = "gradients.jsonl"
KEY = ("cell", "step")


def measured_updates(plans: Sequence[injections.Injection], steps: int,
                     evaluations: Sequence[int]) -> list[int]:
  """The updates decomposed: the evaluations' next updates, and for every plan injected in
  bursts of gap >= 2 its burst updates and the updates halfway between, all in 1 .. steps - 1
  (the measurement follows a chunk)."""
  out = set(evaluations)
  for plan in plans:
    if plan.rate > 0 and plan.gap >= 2:
      bursts = injection.burst_updates(steps, plan.withhold_steps, plan.gap)
      out |= set(bursts.tolist()) | set((bursts + plan.gap // 2).tolist())
  return sorted(s for s in out if 0 < s < steps)


class Decomposer:
  """`gradients.decompose` for every member of a trainer's ensemble as one compiled call.

  task_list: the directions' tasks; fractions: the support sizes as fractions of the MLP width;
  seed: the null directions' (each measurement draws its own from (seed, step)).
  """

  def __init__(self, trainer, task_list: Sequence[Task], fractions: Sequence[float],
               seed: int = 0):
    self.fractions = tuple(float(f) for f in fractions)
    self.sizes = gradients.support_sizes(self.fractions, trainer.model.spec.shape.mlp_hidden)
    self.names = [t.name for t in task_list]
    self.seed = seed
    rep = meshes.replicated(trainer.mesh)
    self._instances = tuple(jax.device_put(a, rep) for a in gradients.task_instances(task_list))
    model, tx, z_loss, sizes = trainer.model, trainer.tx, trainer.spec.z_loss, self.sizes

    def member(params, opt, tokens, injected, key):
      seq_len = tokens.shape[-1] - 1
      return gradients.decompose(model, tx, z_loss, sizes, params, opt,
                                 with_injected(tokens, injected),
                                 gradients.task_mask(injected, seq_len), *self._instances, key)

    def all_members(state, batch, injected, key):
      # batch (1, B, T+1) and injected (1, P, B, H): one update, laid out as a chunk's.
      return jax.vmap(member, in_axes=(0, 0, None, 0, None))(
          state["params"], state["opt"], batch[0], injected[0], key)

    self._fn = jax.jit(all_members, out_shardings=rep)

  def __call__(self, state, batch: jax.Array, injected: jax.Array, step: int
               ) -> dict[str, jax.Array]:
    """Every member's decomposition of update `step` (the state after `step` updates, the
    update's batch (1, B, T+1) and injected rows (1, P, B, H)): each of COSINES and NORMS
    (P, tasks, len(fractions)), "support_dim" (P, len(fractions))."""
    key = jax.random.fold_in(jax.random.key(self.seed), step)
    return self._fn(state, batch, injected, key)


class GradientLog:
  """The decomposition of one program's members at `updates`, appended to wd/gradients.jsonl.

  members: each member's record identity ({"cell": ...}); plans: their injections; source,
  batch_size, eos_id: how the program makes an update's batch and rows.
  """

  def __init__(self, wd: Path, trainer, source, members: Sequence[dict[str, Any]],
               plans: Sequence[injections.Injection], task_list: Sequence[Task],
               batch_size: int, eos_id: int, fractions: Sequence[float],
               updates: Sequence[int], seed: int = 0):
    self.wd, self.source, self.members = Path(wd), source, list(members)
    self.plans, self.tasks = tuple(plans), tuple(task_list)
    self.batch_size, self.eos_id, self.updates = batch_size, eos_id, frozenset(updates)
    self.decomposer = Decomposer(trainer, task_list, fractions, seed)
    self._batch_sharding = sharding.batch_sharding(trainer.mesh, leading=1)
    self._rows_sharding = sharding.injected_sharding(trainer.mesh)

  def callback(self) -> engine.Callback:
    return engine.Callback(self._after_chunk, "chunk")

  def _after_chunk(self, event: engine.Event) -> None:
    if event.step in self.updates:
      workdir.append_metrics(self.wd, self.measure(event.state, event.step), FILE)

  def measure(self, state: Any, step: int) -> list[dict[str, Any]]:
    """The records of update `step` for every member, from the state after `step` updates."""
    batch = self.source.train_batches(step, 1, self.batch_size, self._batch_sharding)
    rows, _ = injections.plan_chunk(self.plans, self.tasks, step, 1, self.batch_size,
                                    self.eos_id)
    out = jax.device_get(self.decomposer(state, batch, jax.device_put(rows, self._rows_sharding),
                                         step))
    carries = rows[0, :, :, 0] >= 0  # (P, B)
    records = []
    for m, identity in enumerate(self.members):
      r = dict(identity) | {"step": int(step), "injection_step": bool(carries[m].any()),
                            "top_k": list(self.decomposer.fractions),
                            "support_dim": [int(v) for v in out["support_dim"][m]]}
      for t, name in enumerate(self.decomposer.names):
        for value in (*gradients.COSINES, *gradients.NORMS):
          r[f"{name}_{value}"] = [float(v) for v in np.asarray(out[value][m, t])]
      records.append(r)
    return records
