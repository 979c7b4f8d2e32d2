#!/usr/bin/env bash
# Unpack the full_run.tgz that scripts/gpu_full_scale.sh wrote and copy its result files into
# results/, never overwriting a committed file; then review and `git add results`.
set -euo pipefail
archive=$(realpath "${1:?usage: gpu_collect.sh PATH/full_run.tgz}")
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
tar xzf "$archive" -C "$tmp"
cp -rn "$tmp/results/." results/
git status --short results | wc -l | xargs echo "new or changed result files:"
rm -rf "$tmp"
