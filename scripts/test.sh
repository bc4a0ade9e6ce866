#!/usr/bin/env bash
# The test command: installs what the suite needs on a fresh Linux machine (the system libraries a
# real Qt/OpenGL window needs, PyTorch, this package with its `test` extra), validates the napari
# manifest, lints, and runs the whole suite under a virtual X display with a real napari viewer.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k models`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# 1. System packages for Xvfb + Qt's xcb platform + Mesa's software OpenGL (Debian/Ubuntu names).
apt_pkgs=(xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0
          libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0
          libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# 2. PyTorch first, pinned: an unpinned `torch` with none installed would pull the CUDA build.
if ! $PY -c "import torch" >/dev/null 2>&1; then
  echo "== installing torch==2.13.0"
  $PY -m pip install -q "torch==2.13.0"
fi

# 3. The package itself (editable) with the test extra.
echo "== installing napari-attnseg[test]"
$PY -m pip install -q -e ".[test]"

# 4. Manifest and lint.
echo "== npe2 validate napari-attnseg"
$PY -m npe2 validate napari-attnseg
echo "== ruff check"
$PY -m ruff check napari_attnseg tests benchmarks

# 5. The suite, under a virtual display so widget tests drive a real napari viewer.
echo "== pytest (under xvfb-run)"
export QT_QPA_PLATFORM=xcb MPLBACKEND=Agg
set +e
xvfb-run -a -s "-screen 0 1600x1000x24" $PY -m pytest "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests (exit 5): treating as a failure of the suite layout" >&2
  rc=1
fi
exit $rc
