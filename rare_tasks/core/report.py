"""What a study's report is made of: sections of summary.md, and the run's own record.

A measurement's report returns a Section: its markdown lines, its headline numbers and the files
it wrote. A study assembles summary.md from its sections in one place (`write_summary`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rare_tasks.core import divergence, workdir

SUMMARY_FILE = "summary.md"


@dataclasses.dataclass
class Section:
  """One part of a report: summary.md lines, headline numbers, the files it wrote, and the
  captions of those a study's index of figures and tables lists (path -> caption)."""

  lines: list[str] = dataclasses.field(default_factory=list)
  numbers: dict[str, Any] = dataclasses.field(default_factory=dict)
  files: tuple[str, ...] = ()
  captions: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunReport:
  """What a run did: its work directory, whether it trained, and the headline numbers."""

  workdir: Path
  trained_steps: int
  wall_s: float
  summary: dict[str, Any]


def write_summary(wd: Path, sections: Sequence[Section]) -> dict[str, Any]:
  """Writes summary.md, the sections' lines in order; returns their numbers merged."""
  text = "\n".join(line for s in sections for line in s.lines)
  workdir.write_text(Path(wd) / SUMMARY_FILE, text if text.endswith("\n") else text + "\n")
  numbers: dict[str, Any] = {}
  for s in sections:
    numbers.update(s.numbers)
  return numbers


def declared_files(*groups: Iterable[str]) -> tuple[str, ...]:
  """The union of declared file lists, in first-seen order, without repeats."""
  return tuple(dict.fromkeys(name for g in groups for name in g))


def fmt(x: float) -> str:
  """A measured number in a sentence: 3 significant digits, 'nan' for NaN."""
  return "nan" if not math.isfinite(x) else f"{x:.3g}"


def pct(x: float) -> str:
  """A fraction as a whole percentage, 'nan' for NaN."""
  return "nan" if not math.isfinite(x) else f"{100 * x:.0f}%"


def diverged_models(records: Iterable[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
  """Per model (its `key` value) that diverged, its first record that says so."""
  out: dict[Any, dict[str, Any]] = {}
  for r in records:
    if r.get(divergence.FIELD) is not None and r[key] not in out:
      out[r[key]] = r
  return out


def diverged_section(records: Sequence[dict[str, Any]], key: str,
                     label: Callable[[dict[str, Any]], str]) -> Section:
  """summary.md's list of the models that diverged (none: no lines), each named by `label` of
  its record with the step; numbers models_run and models_diverged (every model the records
  name, `key` telling them apart)."""
  models = {r[key] for r in records}
  bad = diverged_models(records, key)
  numbers = {"models_run": len(models), "models_diverged": len(bad)}
  if not bad:
    return Section([], numbers)
  lines = ["## Diverged models", "",
           f"{len(bad)} of {len(models)} models diverged: their loss (or gradient norm) "
           "stopped being finite. Each was frozen where it was, not trained further; its "
           "measurements from then on are NaN (gaps in the figures, NaN or empty in the "
           "tables), and a study that judges what was learned counts it as not learned.", ""]
  lines += [f"- {label(r)}: step {r[divergence.FIELD]}"
            for r in sorted(bad.values(), key=lambda r: r[divergence.FIELD])]
  return Section(lines + [""], numbers)


def every_model_diverged(summary: dict[str, Any]) -> bool:
  """Whether a study's headline numbers say that every model it trained diverged."""
  run = summary.get("models_run") or 0
  return run > 0 and summary.get("models_diverged") == run
