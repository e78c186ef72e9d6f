"""The synthetic track (PAPER.md section 2): task families, models, the width x frequency grid
trained as vmapped ensembles, its studies (grid_study, mixture_design) and their reports."""
