#!/usr/bin/env bash
# The injection study on one GPU (configs/lm_gpu.py), end to end under a 5-minute limit, then its
# summary and the wall time. A run killed by the limit resumes where it stopped when started again.
#
#   bash benchmarks/lm_gpu_study.sh [WORKDIR]        (default workdirs/lm_gpu)
set -euo pipefail
workdir="${1:-workdirs/lm_gpu}"
python -c "import jax; d = jax.devices()[0]; assert d.platform == 'gpu', d; print(d.device_kind)"
start=$(date +%s)
timeout 300 python -m experiments.main --config=configs/lm_gpu.py --workdir="$workdir"
echo "wall: $(( $(date +%s) - start )) s"
cat "$workdir/summary.md"
