#!/usr/bin/env bash
# The main job: installs napari-attnseg (and PyTorch, pinned, when none is installed) and opens
# napari with the plugin docked, the nuclei sample loaded and the default model run on it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -c "import torch" >/dev/null 2>&1 || $PY -m pip install "torch==2.13.0"
$PY -m pip install -e .
exec $PY -m napari_attnseg demo "$@"
