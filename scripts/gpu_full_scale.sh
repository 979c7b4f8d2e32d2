#!/usr/bin/env bash
# Run on the GPU machine from the repository root, after scripts/gpu_carry.sh here:
#   bash scripts/gpu_full_scale.sh OUT_DIR [BUDGET_SECONDS [--phases bench compute notebooks]]
# Installs the carried wheels, then `gblend full-run` (GPU benchmark, every full-scale grid,
# the notebooks) within the budget, and packs what is worth committing into one file,
# OUT_DIR/full_run.tgz (also when stopped early). Bring it back with scripts/gpu_collect.sh.
set -euo pipefail
out=${1:?usage: gpu_full_scale.sh OUT_DIR [BUDGET_SECONDS]}
budget=${2:-540}
shift $(($# < 2 ? $# : 2))
work=$(mktemp -d)
mkdir -p "$work/notebooks"
trap 'tar czf "$out/full_run.tgz" -C "$work" results notebooks/reproduce_log.json 2>/dev/null \
  || tar czf "$out/full_run.tgz" -C "$work" results' EXIT
python3 -m pip install -q --no-index --find-links .carry/wheels papermill ipykernel
python3 -m pip install -q --no-index --no-deps --find-links .carry/wheels myst-nb docutils
export PYTHONPATH=$PWD GBLEND_CARRIERS=$PWD/.carry/carriers OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
GBLEND_GIT_COMMIT=$(cat .carry/commit)
export GBLEND_GIT_COMMIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -m gblend full-run --out "$work" --budget "$budget" "$@"
