"""The pretraining study's report: figures/loss.png and summary.md, from metrics.jsonl and
run.json, assembled from its sections in summary order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections

from rare_tasks.core.report import SUMMARY_FILE, declared_files, diverged_section, write_summary
from rare_tasks.lm.report import loss_curves, model_and_text, throughput
from rare_tasks.lm.report.pretraining_view import PretrainingRun

# The report's sections in summary.md order, each written when it applies to the run.
SECTIONS = (model_and_text, throughput, loss_curves)
# Everything the report writes into the work directory (--overwrite deletes these).
FILES = declared_files((SUMMARY_FILE,), *(s.FILES for s in SECTIONS))


def write(wd: Path, c: ml_collections.ConfigDict, info: dict[str, Any],
          records: list[dict[str, Any]]) -> dict[str, Any]:
  """Draws the figure and writes summary.md; returns the headline numbers."""
  run = PretrainingRun(c, Path(wd), info, records)
  sections = [s.section(run) for s in SECTIONS if s.applies(run)]
  diverged = diverged_section(
      records, "member", lambda r: f"member {r['member']} (init_seed {r.get('init_seed')})")
  return write_summary(wd, sections[:1] + [diverged] + sections[1:])
