"""Shared infrastructure of every study and track; imports nothing else of rare_tasks.

engine (resume, the chunk loop, checkpoints, progress and callbacks for every study's
programs), config (checks, typo hints, presets), aliases (renamed studies, fields and values),
command_line (flags and their one-line errors), workdir (config.json, metrics.jsonl, atomic
writes), checkpoints (orbax), compilation_cache, mesh (devices, processes), steps (where a loop
stops), optimizers, progress, tables (CSV), traces (per-step arrays), report (sections of
summary.md), plots (what figures share).
"""
