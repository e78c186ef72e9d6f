"""The injection summary's opening: the title, the headline and what was trained (the cells,
steps and batch, the injection schedule, the tasks and the sizes)."""

from __future__ import annotations

from rare_tasks.core.report import Section
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
  lines = [f"# Rare tasks injected into pretraining: {len(sizes)} sizes x "
           f"{len(c.grid.frequency)} frequencies ({unit})", "", headline, "",
           f"- {sum(map(len, run.cells.values()))} cells: per size the grid's frequency x gap "
           "x task x seed and a control at frequency 0 per seed, one ensemble sharing every "
           f"text batch; {c.train.steps} steps of "
           + "/".join(str(b) for b in sorted(set(batch.values())))
           + f" rows of {c.data.seq_len} tokens; schedule `{c.injection.schedule}`, the first "
           f"{c.injection.withhold_steps} steps without injections",
           f"- tasks over p = {c.task.num_symbols} symbols each, {len(tasks[0].train)} "
           f"train / {len(tasks[0].test)} test instances; learned = train accuracy >= "
           f"{c.learned.threshold} at the end, generalised = test accuracy >= "
           f"{c.learned.threshold} (argmax over all {c.data.vocab_size} tokens after TOK1 TOK2)",
           "- sizes: " + ", ".join(f"{s} ({params[s]:,} parameters, batch {batch[s]})"
                                   for s in sizes), ""]
  return Section(lines, {"headline": headline})
