"""rare_tasks: why larger models learn rare tasks that smaller ones never learn.

The package is layered; a layer imports only the layers below it (docs/architecture.md):
  core/       shared infrastructure: the training engine of both tracks, config checking, work
              directory, checkpoints, meshes, optimizers, progress, tables, report sections,
              plots;
  analysis/   pure measurements both tracks use: allocation, interference, retention, learning
              order, scaling fits, frequency search;
  injection   the one schedule by which rare examples reach the batches;
  synthetic/  the synthetic track: task families, models, the grid, ensembles, training, its
              studies and reports;
  lm/         the language-model track: decoders, text, injected tasks, its studies and reports;
  studies     config.study -> the study that runs it, the one module that sees both tracks.
"""
