#!/usr/bin/env bash
# The main job: installs napari-attnseg (and PyTorch, pinned, when none is installed) and opens
# napari with the plugin docked, the nuclei sample loaded and the default model run on it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# A torch older than pyproject's floor (2.3) counts as none: else `pip install -e .` would replace it with
# whatever torch build the index serves (not the pinned one).
$PY -c "import sys, torch; sys.exit(tuple(int(p) for p in torch.__version__.split('+')[0].split('.')[:2]) < (2, 3))" \
  >/dev/null 2>&1 || $PY -m pip install "torch==2.13.0"
$PY -m pip install -e .
exec $PY -m napari_attnseg demo "$@"
