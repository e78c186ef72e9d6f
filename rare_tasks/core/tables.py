"""Tidy result tables: CSV files of one row per measurement, and the numbers they hold.

metrics.jsonl writes a NaN measurement as null; `number` turns it back into NaN. A table is
written whole and atomically, never appended to row by row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rare_tasks.core import workdir


def number(v: float | None) -> float:
  """A metrics.jsonl number: null (a NaN measurement) back to NaN."""
  return float("nan") if v is None else float(v)


def write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
  """A tidy CSV table: one line per row, the given columns in order, written atomically."""
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
  writer.writeheader()
  for r in rows:
    writer.writerow({k: r[k] for k in columns})
  workdir.write_text(path, buf.getvalue())


def read_csv(path: Path) -> list[dict[str, str]]:
  """Every row of a CSV table as {column: text}."""
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def mean_by(rows: list[dict[str, Any]], keys: tuple[str, ...],
            value: str) -> dict[tuple, float]:
  """Mean of column `value` over the rows of each combination of `keys` (NaN ignored; NaN when
  every value is NaN)."""
  groups: dict[tuple, list[float]] = {}
  for r in rows:
    groups.setdefault(tuple(r[k] for k in keys), []).append(r[value])
  return {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
          for k, v in groups.items()}
