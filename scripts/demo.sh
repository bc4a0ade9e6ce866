#!/usr/bin/env bash
# The main job: installs napari-attnseg (and PyTorch, pinned, when none is installed) and opens
# napari with the plugin docked, the nuclei sample loaded and the default model run on it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# A torch older than pyproject's floor (2.3) counts as none: else `pip install -e .` would replace it with
# whatever torch build the index serves (not the pinned one).
pip_install() {  # pip's own output as it comes; a system Python that refuses installs (PEP 668) gets what to do
  local log rc=0
  log=$(mktemp)
  $PY -m pip install "$@" 2>&1 | tee "$log" || rc=$?
  if [ "$rc" -ne 0 ] && grep -q "externally-managed-environment" "$log"; then
    echo "demo.sh: $PY is the system's Python, which does not take pip installs (PEP 668). Make a virtual" \
      "environment and run demo.sh from it: python3 -m venv ~/attnseg-env && . ~/attnseg-env/bin/activate &&" \
      "bash scripts/demo.sh" >&2
  fi
  rm -f "$log"
  return "$rc"
}
$PY -c "import sys, torch; sys.exit(tuple(int(p) for p in torch.__version__.split('+')[0].split('.')[:2]) < (2, 3))" \
  >/dev/null 2>&1 || pip_install "torch==2.13.0"
pip_install -e .
exec $PY -m napari_attnseg demo "$@"
