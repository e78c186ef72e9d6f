"""Shared infrastructure of every study and track; imports nothing else of rare_tasks.

engine (resume, the chunk loop, checkpoints, progress and callbacks for every study's
programs), config (checks, typo hints, presets), workdir (config.json, metrics.jsonl, atomic
writes), checkpoints (orbax), mesh (devices, processes), optimizers, progress, tables (CSV),
traces (per-step arrays), report (sections of summary.md), plots (what figures share).
"""
