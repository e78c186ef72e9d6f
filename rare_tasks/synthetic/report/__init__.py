"""The report of a synthetic study: one module per measurement, each writing its tables and
figures and returning its part of summary.md (rare_tasks.core.report.Section).

Every grid-study section reads one `GridResults` (`results_view`) and says whether it applies to
a run (`applies`); the grid study lists them in summary order (`grid_study.SECTIONS`).
"""
