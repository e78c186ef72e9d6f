"""What a study's report is made of: sections of summary.md, and the run's own record.

A measurement's report returns a Section: its markdown lines, its headline numbers and the files
it wrote. A study assembles summary.md from its sections in one place (`write_summary`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rare_tasks.core import workdir

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
