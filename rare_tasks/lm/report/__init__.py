"""The reports of the language-model studies: one module per measurement, each writing its
tables and figures and returning its part of summary.md (rare_tasks.core.report.Section).

Every section reads one view of the finished run, built once: `pretraining_view.PretrainingRun`
for the pretraining study, `injection_view.InjectionRun` for the injection study. Each section
module declares the files it writes (`FILES`), whether it applies to a run (`applies`) and its
part of the summary (`section`); `pretraining` and `injection` list them in summary order.
"""
