#!/usr/bin/env bash
# The language models' mixture design on one GPU (configs/lm_mixture_design.py:gpu, the paper's 4M
# and 20M sizes), end to end under a 5-minute limit, then its summary and the wall time. A run
# killed by the limit resumes at the round it was in when started again.
#
#   bash benchmarks/lm_mixture_design_gpu.sh [WORKDIR]   (default workdirs/lm_mixture_design_gpu)
set -euo pipefail
workdir="${1:-workdirs/lm_mixture_design_gpu}"
python -c "import jax; d = jax.devices()[0]; assert d.platform == 'gpu', d; print(d.device_kind)"
start=$(date +%s)
timeout 300 python -m experiments.main --config=configs/lm_mixture_design.py:gpu \
  --workdir="$workdir"
echo "wall: $(( $(date +%s) - start )) s"
cat "$workdir/summary.md"
