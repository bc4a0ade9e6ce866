#!/usr/bin/env bash
# The GPU checks and benchmarks, as one script for a lent GPU machine (see docs/benchmarks.md).
#   bash benchmarks/gpu_check.sh OUT_DIR [quick|full]
# Expects the test extras' pure-Python wheels (monai, nibabel, pydicom, dask, distributed, ...) in .whl/
# when they are not installed. quick: the CUDA tests, bench_gpu.py and profile_gpu.py. full: instead of the profile, the
# torch.compile variant and the core tests that choose their device themselves, on CUDA.
set -u
out=${1:?output folder}; level=${2:-quick}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
start=$(date +%s)
step() { echo "=== $(( $(date +%s) - start )) s: $*"; }
if ! python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check.sh: no CUDA GPU here (torch.cuda.is_available() is False): run it on a GPU machine;" \
    "on a CPU, python3 benchmarks/bench_inference.py measures the engine against MONAI" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
step "CUDA tests"
timeout 150 python3 -m pytest tests/test_inference_slabs.py -q -p no:cacheprovider -k "cuda or compiled" 2>&1 \
  | tee "$out/gpu_tests.log" | tail -5
step "bench_gpu"
timeout 200 python3 benchmarks/bench_gpu.py --repeats 5 --out "$out" 2>&1 | tail -12
if [ "$level" = quick ]; then
  step "profile_gpu"
  timeout 120 python3 benchmarks/profile_gpu.py > "$out/profile.txt" 2>&1; grep -E "^=====|^GPU busy" "$out/profile.txt"
  step done; exit 0
fi
step "bench_gpu with ATTNSEG_COMPILE=1 (torch.compile of the inference copy; without the CT volume)"
ATTNSEG_COMPILE=1 timeout 90 python3 benchmarks/bench_gpu.py --repeats 3 --no-ct --out "$out/compiled" 2>&1 | tail -4
step "core tests on CUDA (the ones that pick the device themselves)"
timeout 130 python3 -m pytest -q -p no:cacheprovider -n 8 -m "not gui" tests/test_training.py tests/test_prompts.py \
  tests/test_finetune_brain.py tests/test_far_negatives.py tests/test_cohort.py tests/test_suggest.py \
  tests/test_inference_engine.py tests/test_correct.py 2>&1 | tee "$out/core_tests_cuda.log" | tail -15
step done
