"""The injection summary's opening: the title, the headline and what was trained (the cells,
steps and batch, the injection schedule, the tasks and the sizes)."""

from __future__ import annotations

from rare_tasks.core.report import Section
from rare_tasks.lm.report import results_table
from rare_tasks.lm.report.injection_view import InjectionRun

FILES: tuple[str, ...] = ()


def applies(run: InjectionRun) -> bool:
  return True


def section(run: InjectionRun, headline: str) -> Section:
  """The opening lines, `headline` (the findings' one line) under the title."""
  c, sizes, params = run.config, run.sizes, run.params
  batch = {s: run.info["sizes"][s]["tokens_per_step"] // c.data.seq_len for s in sizes}
  unit = c.injection.unit.replace("_", " ")
  tasks = run.task_list
  splits = [t.split_rows() for t in tasks]
  lengths = " and ".join(f"{n:,}" for n in run.lengths)
  lines = [f"# Rare tasks injected into pretraining: {len(sizes)} sizes x "
           f"{len(c.grid.frequency)} frequencies ({unit})", "", headline, "",
           f"- {sum(map(len, run.cells.values()))} cells: per size and length the grid's "
           "frequency x gap x task x seed and a control at frequency 0 per seed, one ensemble "
           f"sharing every text batch; {lengths} steps (each its own warmup-cosine schedule) of "
           + "/".join(str(b) for b in sorted(set(batch.values())))
           + f" rows of {c.data.seq_len} tokens; schedule `{c.injection.schedule}`, the first "
           f"{c.injection.withhold_steps} steps without injections",
           f"- tasks over p = {tasks[0].num_symbols} symbols each, split `{c.task.split}`: "
           + "; ".join(f"{t.name} {len(r['train'])} train instances (injected), "
                       f"{len(r['test_unseen'])} off-diagonal test pairs never injected in "
                       f"either order (test_unseen) and {len(r['test_mirror'])} whose mirror "
                       "was (test_mirror)" for t, r in zip(tasks, splits)),
           "- scores of the LABEL after TOK1 TOK2 alone: accuracy (the argmax over all "
           f"{c.data.vocab_size} tokens), choice accuracy (the right answer above the others the "
           "task allows, off-diagonal pairs) and format rate (the argmax is an allowed answer)",
           "- sizes: " + ", ".join(f"{s} ({params[s]:,} parameters, batch {batch[s]})"
                                   for s in sizes), ""]
  missing = results_table.not_measured(run)
  if missing:
    lines += [f"Not measured in this run ({', '.join(missing)}): choice accuracy, format rate "
              "and the test_unseen / test_mirror splits were not recorded when it was trained; "
              "their columns are NaN and thresholds under choice accuracy are none.", ""]
  return Section(lines, {"headline": headline})
