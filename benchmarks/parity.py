"""Training speed on multitask sparse parity: the grid study's ensembles against the reference.

  python -m benchmarks.parity [--repeats 3] [--steps 250] [--reference_steps 100]
      [--widths 8,32,128] [--skip_all_devices] [--out PATH]

For each width (default: the widths of configs/sparse_parity.py's default grid), the group of
cells the grid study trains at that width (rare frequencies x seeds: 2 streams x 2 members), trained
in two ways, in one process, each compiled and warmed up before timing:

1. ours: the grid study's way. The P cells as one ensemble, data sampled on the device inside
   the jitted, scanned `ensemble.train_chunk` (--steps steps per call, state donated), on one
   device; and, unless --skip_all_devices, as the trainer places it (`training.GroupRun`),
   sharded over all local devices (on CPU one device per core, as `experiments.main` sets up).
2. reference: the way the PyTorch code of Michaud et al. 2023 (the quantization model,
   scripts/sparse-parity-v4.py) trains, in numpy and JAX: one model at a time, and every step
   the host draws each example's task from the mixture (np.searchsorted of uniforms on the CDF),
   counts the examples of each task, and builds the batch task by task (random bits, the task's
   one-hot code, the parity of its secret bits), concatenates, transfers it to the device and
   calls a jitted single-model step (the same MLP, loss and optax optimiser as ours, one
   compile shared by all P models). Every one of the P models runs --reference_steps steps per
   repeat, in turn; the device computes a step while the host builds the next batch (JAX's
   asynchronous dispatch), which favours the reference. For a breakdown, the share of the
   reference's time spent building and transferring batches, and the time of its jitted step
   alone (one model, one fixed batch already on the device, called back to back).

Both run the same cells (mixture, learning rate, seed) on the same device (jax.devices()[0]);
the timers run in turn within each repeat, their order rotating, and the medians over --repeats
are compared per model-step (one optimiser step of one model): P x steps model-steps per call of
ours, P x reference_steps per repeat of the reference. Evaluation is timed in neither.

Before timing, a correctness check: a large batch built by the reference loop has the labels
that `sparse_parity.labels` (and `sparse_parity.reference_labels`) give for its bits and tasks,
and the inputs that `SparseParity.batch` gives.

Writes benchmarks/results/parity.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import timing
from rare_tasks.core import mesh
from rare_tasks.core.optimizers import make_optimizer
from rare_tasks.synthetic import ensemble, training
from rare_tasks.synthetic.grid import Cell, Group, expand, group_cells
from rare_tasks.synthetic.models import model_of
from rare_tasks.synthetic.tasks import sparse_parity, task_of
from rare_tasks.synthetic.tasks.sparse_parity import SparseParity

REPO = timing.REPO
CONFIG_FILE = "configs/sparse_parity.py"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "parity.json"
TARGET_RATIO = 5.0  # ours should train at least this many model-steps per reference model-step
CHECK_EXAMPLES = 4096
CHECK_SEED = 12345


def _secret_sets(task: SparseParity) -> list[np.ndarray]:
  """Each task's secret bit indices, unpadded."""
  return [row[row >= 0] for row in task.secrets()]


def reference_batch(rng: np.random.Generator, cdf: np.ndarray, secret_sets: Sequence[np.ndarray],
                    num_tasks: int, num_bits: int,
                    batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """One training batch built on the host as the reference does: inputs (B, K + n) float32
  (one-hot task code, then the bits) and labels (B,) int32, the examples grouped by task."""
  # side="right" matches `task_family.assign_tasks` (a uniform equal to a CDF value goes up).
  tasks = np.minimum(np.searchsorted(cdf, rng.random(batch_size), side="right"), num_tasks - 1)
  sizes = np.bincount(tasks, minlength=num_tasks)
  x = np.zeros((batch_size, num_tasks + num_bits), np.float32)
  y = np.zeros((batch_size,), np.int32)
  start = 0
  for t, size in enumerate(sizes):
    if size == 0:
      continue
    bits = rng.integers(0, 2, size=(size, num_bits)).astype(np.float32)
    code = np.zeros((size, num_tasks), np.float32)
    code[:, t] = 1.0
    x[start:start + size] = np.concatenate([code, bits], axis=1)
    y[start:start + size] = bits[:, secret_sets[t]].sum(axis=1) % 2
    start += size
  return x, y


def check_labels(task: SparseParity, mixture: np.ndarray) -> dict[str, Any]:
  """The reference loop's batch against the task family's own labels and inputs."""
  rng = np.random.default_rng(CHECK_SEED)
  secret_sets = _secret_sets(task)
  x, y = reference_batch(rng, np.cumsum(mixture), secret_sets, task.num_tasks, task.num_bits,
                         CHECK_EXAMPLES)
  bits = x[:, task.num_tasks:].astype(np.int32)
  tasks = np.argmax(x[:, :task.num_tasks], axis=1).astype(np.int32)
  shared = {k: jnp.asarray(v) for k, v in task.shared_constants().items()}
  ours = np.asarray(sparse_parity.labels(jnp.asarray(bits), jnp.asarray(tasks),
                                         shared["secrets"], shared["secret_mask"]))
  x_ours, y_ours = task.batch(jnp.asarray(bits), jnp.asarray(tasks), {}, shared)
  result = {
      "examples": CHECK_EXAMPLES, "tasks_present": int(len(np.unique(tasks))),
      "labels_equal": bool(np.array_equal(ours, y)),
      "reference_labels_equal": bool(np.array_equal(
          sparse_parity.reference_labels(bits, tasks, secret_sets), y)),
      "inputs_equal": bool(np.array_equal(np.asarray(x_ours), x)),
      "batch_labels_equal": bool(np.array_equal(np.asarray(y_ours), y)),
      "label_mean": float(y.mean()),
  }
  failed = [k for k, v in result.items() if k.endswith("_equal") and not v]
  assert not failed, f"reference batch disagrees with sparse_parity: {failed}"
  return result


class _Ours:
  """The group as one ensemble on one device: a compiled `train_chunk` of fixed length."""

  def __init__(self, spec: ensemble.EnsembleSpec, group: Group, num_steps: int,
               device: jax.Device):
    self.consts = jax.device_put(training.group_constants(spec.task, group.cells), device)
    init = jax.jit(partial(ensemble.init_state, spec, num_members=group.num_members))
    self.state = init(self.consts)
    start = time.perf_counter()
    self._chunk = jax.jit(partial(ensemble.train_chunk, spec, num_steps=num_steps),
                          donate_argnums=0).lower(self.state, self.consts).compile()
    self.compile_s = time.perf_counter() - start
    start = time.perf_counter()
    self.run()  # warm-up: first execution, not timed
    self.warmup_s = time.perf_counter() - start

  def run(self) -> float:
    start = time.perf_counter()
    self.state, self.loss = self._chunk(self.state, self.consts)
    jax.block_until_ready((self.state, self.loss))
    return time.perf_counter() - start


def _reference_step(spec: ensemble.EnsembleSpec, params, opt_state, learning_rate, x, y):
  """One optimiser step of one model on a host-built batch: -> (params, opt_state, loss)."""
  t = spec.train
  optimizer = make_optimizer(t.optimizer, learning_rate, t.schedule, t.steps, t.warmup_steps,
                             t.final_lr_fraction, t.momentum)

  def loss_fn(p):
    _, out = spec.model.apply(p, x)
    # The sparse parity loss reads only outputs and labels (no tasks, no constants).
    return spec.task.loss(out, y, None, {}, {})

  with jax.default_matmul_precision(ensemble.MATMUL_PRECISION):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


class _Reference:
  """The group's cells trained one model at a time, every batch built on the host."""

  def __init__(self, spec: ensemble.EnsembleSpec, group: Group, num_steps: int,
               device: jax.Device):
    task = spec.task
    t = spec.train
    self._task, self._batch_size, self._steps, self._device = task, t.batch_size, num_steps, device
    self._secret_sets = _secret_sets(task)
    optimizer = make_optimizer(t.optimizer, 1.0, t.schedule, t.steps, t.warmup_steps,
                               t.final_lr_fraction, t.momentum)

    def new_model(i: int, cell: Cell) -> dict[str, Any]:
      values = cell.values
      params = jax.device_put(spec.model.init(jax.random.key(values["seed"]), task.input_dim),
                              device)
      return {
          "params": params, "opt_state": jax.device_put(optimizer.init(params), device),
          "learning_rate": jax.device_put(jnp.float32(values["learning_rate"]), device),
          "cdf": np.cumsum(cell.task_frequencies),
          "rng": np.random.default_rng([values["seed"], i])}

    self.models = [new_model(i, c) for i, c in enumerate(group.flat_cells())]
    # A separate copy of the first model, trained on one fixed batch: the step without the host.
    self._fixed = new_model(0, group.flat_cells()[0])
    self._fixed["batch"] = self._batch(self._fixed)
    m = self.models[0]
    x, y = self._batch(m)
    start = time.perf_counter()
    self._step = jax.jit(partial(_reference_step, spec), donate_argnums=(0, 1)).lower(
        m["params"], m["opt_state"], m["learning_rate"], x, y).compile()
    self.compile_s = time.perf_counter() - start
    self.host_s: list[float] = []  # seconds building and transferring batches, per run
    start = time.perf_counter()
    self.run()  # warm-up: first execution, not timed
    self.warmup_s = time.perf_counter() - start
    self.host_s.clear()
    self.run_step_only()

  def _batch(self, model: dict) -> tuple[jax.Array, jax.Array]:
    x, y = reference_batch(model["rng"], model["cdf"], self._secret_sets, self._task.num_tasks,
                           self._task.num_bits, self._batch_size)
    return jax.device_put((x, y), self._device)

  def run(self) -> list[float]:
    """Every model in turn, `num_steps` steps each; returns the seconds of each model."""
    times, host = [], 0.0
    for m in self.models:
      start = time.perf_counter()
      for _ in range(self._steps):
        built = time.perf_counter()
        x, y = self._batch(m)
        host += time.perf_counter() - built
        m["params"], m["opt_state"], m["loss"] = self._step(m["params"], m["opt_state"],
                                                            m["learning_rate"], x, y)
      jax.block_until_ready((m["params"], m["loss"]))
      times.append(time.perf_counter() - start)
    self.host_s.append(host)
    return times

  def run_step_only(self) -> float:
    """Seconds of `num_steps` steps of one model on a fixed batch already on the device."""
    m = self._fixed
    start = time.perf_counter()
    for _ in range(self._steps):
      m["params"], m["opt_state"], m["loss"] = self._step(m["params"], m["opt_state"],
                                                          m["learning_rate"], *m["batch"])
    jax.block_until_ready((m["params"], m["loss"]))
    return time.perf_counter() - start


def bench_width(config, group: Group, task: SparseParity, args: argparse.Namespace,
                device: jax.Device) -> dict[str, Any]:
  """Ours against the reference loop (and ours on all devices) for one group."""
  spec = ensemble.EnsembleSpec(model_of(config.model.name, group.static, task), task,
                               training.train_spec_of(config))
  ours = _Ours(spec, group, args.steps, device)
  ref = _Reference(spec, group, args.reference_steps, device)
  timers: dict[str, Callable[[], Any]] = {"ours": ours.run, "reference": ref.run,
                                          "reference_step_only": ref.run_step_only}
  if not args.skip_all_devices:
    timers["ours_all_devices"] = timing.ShardedGroup(config, group, task, args.steps).run
  raw = timing.interleaved(timers, args.repeats)
  num_models = len(group.flat_cells())
  ours_steps = num_models * args.steps
  ref_steps = num_models * args.reference_steps
  ours_s = statistics.median(raw["ours"])
  ref_totals = [sum(t) for t in raw["reference"]]
  ref_s = statistics.median(ref_totals)
  ours_rate, ref_rate = ours_steps / ours_s, ref_steps / ref_s
  result: dict[str, Any] = {
      "group": group.name, "width": group.static["width"], "models": num_models,
      "streams": group.num_streams, "members": group.num_members,
      "ours_model_steps_per_call": ours_steps, "reference_model_steps_per_repeat": ref_steps,
      "ours_median_s": ours_s, "reference_median_s": ref_s,
      "ours_model_steps_per_s": ours_rate, "reference_model_steps_per_s": ref_rate,
      "ratio_ours_over_reference": ours_rate / ref_rate,
      "reference_us_per_model_step": 1e6 / ref_rate, "ours_us_per_model_step": 1e6 / ours_rate,
      "reference_host_batch_share": statistics.median(
          h / total for h, total in zip(ref.host_s, ref_totals)),
      "reference_step_only_us": 1e6 * statistics.median(raw["reference_step_only"])
                                / args.reference_steps,
      "ours_raw_s": raw["ours"], "reference_raw_s": ref_totals,
      "reference_model_raw_s": raw["reference"],
      "reference_step_only_raw_s": raw["reference_step_only"],
      "compile_s": {"ours": ours.compile_s, "reference_step": ref.compile_s},
      "first_run_s": {"ours": ours.warmup_s, "reference": ref.warmup_s},
      "final_train_loss": {"ours_chunk_mean": np.asarray(ours.loss).ravel().tolist(),
                           "reference_last_step": [float(m["loss"]) for m in ref.models]},
  }
  if not args.skip_all_devices:
    all_s = statistics.median(raw["ours_all_devices"])
    result.update({
        "all_devices": jax.local_device_count(), "ours_all_devices_median_s": all_s,
        "ours_all_devices_model_steps_per_s": ours_steps / all_s,
        "ratio_ours_all_devices_over_reference": ours_steps / all_s / ref_rate,
        "ours_all_devices_raw_s": raw["ours_all_devices"]})
  return result


def _print_table(results: dict[str, Any], args: argparse.Namespace) -> None:
  rows = results["by_width"].values()
  n = jax.local_device_count()
  all_cols = "" if args.skip_all_devices else f" ours, {n} devices | ratio |"
  print(f"| width | models | reference model-steps/s | ours model-steps/s | ours / reference |"
        f"{all_cols}")
  print("|---|---|---|---|---|" + ("" if args.skip_all_devices else "---|---|"))
  for r in rows:
    line = (f"| {r['width']} | {r['streams']} x {r['members']} "
            f"| {r['reference_model_steps_per_s']:,.0f} | {r['ours_model_steps_per_s']:,.0f} "
            f"| {r['ratio_ours_over_reference']:.1f}x |")
    if not args.skip_all_devices:
      line += (f" {r['ours_all_devices_model_steps_per_s']:,.0f} "
               f"| {r['ratio_ours_all_devices_over_reference']:.1f}x |")
    print(line)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (median)")
  parser.add_argument("--steps", type=int, default=250,
                      help="steps per timed call of ours (the ensemble's train_chunk)")
  parser.add_argument("--reference_steps", type=int, default=100,
                      help="steps of every model per timed repeat of the reference loop")
  parser.add_argument("--widths", type=timing.parse_ints, default=None,
                      help="comma-separated widths (default: the config's grid)")
  parser.add_argument("--skip_all_devices", action="store_true",
                      help="do not time ours sharded over all local devices")
  parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
  args = parser.parse_args(argv)
  if args.repeats < 1 or args.steps < 1 or args.reference_steps < 1:
    parser.error("--repeats, --steps and --reference_steps must be at least 1")
  if args.widths is not None and (not args.widths or min(args.widths) < 1):
    parser.error("--widths must be positive integers")
  return args


def _settings(config, task: SparseParity, groups: list[Group], args) -> dict[str, Any]:
  return {
      "config": CONFIG_FILE, "repeats": args.repeats, "steps_per_call": args.steps,
      "reference_steps_per_model": args.reference_steps,
      "widths": [g.static["width"] for g in groups],
      "batch_size": config.train.batch_size, "num_tasks": task.num_tasks,
      "num_bits": task.num_bits, "parity_bits": task.parity_bits,
      "input_dim": task.input_dim, "optimizer": config.train.optimizer,
      "schedule": config.train.schedule, "matmul_precision": ensemble.MATMUL_PRECISION,
      "timing": "median over repeats; ours: block_until_ready'd calls of the compiled "
                "train_chunk (P x steps model-steps each); reference: every model's "
                "reference_steps steps in turn, each model block_until_ready'd at its end "
                "(P x reference_steps model-steps per repeat); timers in turn each repeat, "
                "order rotating; compile and first run excluded",
      "reference": "per step: np.searchsorted task draw, np.bincount, per task numpy bits, "
                   "one-hot code and parity labels, concatenate, jax.device_put, jitted "
                   "single-model step (same MLP, loss, optimiser); host batch building "
                   "overlaps the device step (asynchronous dispatch)"}


def _width_line(r: dict[str, Any], all_devices: bool) -> str:
  line = (f"width {r['width']:>3}: reference {r['reference_model_steps_per_s']:,.0f} "
          f"model-steps/s ({r['reference_host_batch_share']:.0%} of it building batches; "
          f"the step alone {r['reference_step_only_us']:.0f} us), "
          f"ours {r['ours_model_steps_per_s']:,.0f} on 1 device "
          f"({r['ratio_ours_over_reference']:.1f}x)")
  if all_devices:
    line += (f", {r['ours_all_devices_model_steps_per_s']:,.0f} on {r['all_devices']} "
             f"({r['ratio_ours_all_devices_over_reference']:.1f}x)")
  return line


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the benchmark, prints its table and writes its JSON; returns the results."""
  args = _arguments(argv)
  mesh.use_cpu_cores()  # before any JAX computation, as experiments.main does
  config = timing.load_config(CONFIG_FILE)
  if args.widths is not None:
    config.grid.width = tuple(args.widths)
  task = task_of(config)
  groups = group_cells(expand(config))
  device = jax.devices()[0]
  start = time.perf_counter()
  check = check_labels(task, groups[0].flat_cells()[0].task_frequencies)
  print(f"labels check: {check['examples']} reference examples over {check['tasks_present']} "
        f"tasks agree with sparse_parity.labels, reference_labels and SparseParity.batch",
        flush=True)
  results: dict[str, Any] = {
      **timing.environment(device),
      "devices_used": "1 (jax.devices()[0]) for 'ours' and 'reference'; all local devices for "
                      "'ours_all_devices'",
      "settings": _settings(config, task, groups, args), "labels_check": check,
      "target": f"ours >= {TARGET_RATIO}x reference model-steps/s on one device, every width",
      "by_width": {},
  }
  for group in groups:
    r = bench_width(config, group, task, args, device)
    results["by_width"][str(r["width"])] = r
    print(_width_line(r, not args.skip_all_devices), flush=True)
    timing.write_json(args.out, results)
  ratios = [r["ratio_ours_over_reference"] for r in results["by_width"].values()]
  results["min_ratio_ours_over_reference"] = min(ratios)
  results["target_met"] = min(ratios) >= TARGET_RATIO
  results["wall_s"] = time.perf_counter() - start
  print()
  print(f"{device.platform} ({device.device_kind}), jax {jax.__version__}; batch "
        f"{config.train.batch_size}, K={task.num_tasks}, n={task.num_bits}, k={task.parity_bits}; "
        f"medians of {args.repeats} repeats; model-steps/s on 1 device unless said")
  _print_table(results, args)
  print(f"target ours >= {TARGET_RATIO}x reference at every width: "
        f"{timing.met(results['target_met'])} (min {min(ratios):.1f}x)")
  timing.write_json(args.out, results, final=True)
  return results


if __name__ == "__main__":
  main()
