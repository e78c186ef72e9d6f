"""The synthetic track (docs/science.md, "The synthetic setting"; docs/synthetic.md): task
families, models, the width x frequency grid trained as vmapped ensembles, its studies
(grid_study, mixture_design) and their reports."""
