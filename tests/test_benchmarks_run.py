"""The benchmark scripts as a reviewer runs them: --help, --out (never over the committed tables), clear
messages where MONAI or a CUDA GPU is missing, no tracebacks."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def _run_blocked(script: str, argv: list[str], setup: str = "") -> subprocess.CompletedProcess:
    """Run a benchmark script with ``monai`` unimportable (as where the bench extra is not installed)."""
    code = ("import runpy, sys\nsys.modules['monai'] = None\n" + setup
            + f"sys.argv = [{script!r}, *{argv!r}]\nrunpy.run_path({str(BENCH / script)!r}, run_name='__main__')\n")
    return _run([sys.executable, "-c", code])


def test_model_table_help_does_not_overwrite_the_committed_table():
    committed = BENCH / "results" / "model_table.md"
    before = committed.stat().st_mtime_ns
    r = _run([sys.executable, str(BENCH / "model_table.py"), "--help"], timeout=20)
    assert r.returncode == 0, r.stderr
    assert "--out" in r.stdout
    assert committed.stat().st_mtime_ns == before


@pytest.mark.parametrize("script", ["bench_accuracy.py", "bench_brightfield.py", "bench_cohort.py",
                                    "bench_inference.py", "bench_memory.py", "bench_prompts.py",
                                    "bench_robustness.py", "bench_scale.py", "model_table.py", "bench_gpu.py"])
def test_every_table_writer_takes_out(script):
    r = _run([sys.executable, str(BENCH / script), "--help"], timeout=20)
    assert r.returncode == 0, r.stderr
    assert "--out" in r.stdout


def test_robustness_writes_into_out(tmp_path):
    committed = BENCH / "results" / "robustness.md"
    before = committed.stat().st_mtime_ns
    r = _run([sys.executable, str(BENCH / "bench_robustness.py"), "--brain-model", "", "--only", "gamma 0.8",
              "--out", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "robustness.md").read_text()
    assert "Machine: " in text and "| change | nuclei-2d Dice |" in text and "gamma 0.8" in text
    assert (tmp_path / "robustness.json").exists()
    assert committed.stat().st_mtime_ns == before


def test_bench_inference_without_monai_says_how_to_install(tmp_path):
    r = _run_blocked("bench_inference.py", ["--quick", "--out", str(tmp_path)])
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    assert "MONAI" in r.stderr and "pip install" in r.stderr
    assert not list(tmp_path.iterdir())


def test_bench_gpu_without_monai_says_how_to_install(tmp_path):
    # on a GPU machine without the bench extra: stop before loading anything
    r = _run_blocked("bench_gpu.py", ["--out", str(tmp_path)], setup="import torch\ntorch.cuda.is_available = lambda: True\n")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    assert "MONAI" in r.stderr and "pip install" in r.stderr


@NO_CUDA
def test_profile_gpu_without_cuda_says_so():
    r = _run([sys.executable, str(BENCH / "profile_gpu.py")], timeout=20)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    assert "needs a CUDA GPU" in r.stderr


@NO_CUDA
def test_gpu_check_without_cuda_stops_at_once(tmp_path):
    # before: it ran the CUDA tests (all skipped), bench_gpu and a profile that crashed, then said "done"
    r = _run(["bash", str(BENCH / "gpu_check.sh"), str(tmp_path / "out"), "quick"], timeout=30)
    assert r.returncode != 0
    assert "no CUDA GPU" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def _bench_loop():
    spec = importlib.util.spec_from_file_location("bench_loop", BENCH / "bench_loop.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_loop_takes_the_shared_data_folder(tmp_path):
    (tmp_path / "radiomics").mkdir()
    (tmp_path / "radiomics" / "lung1_image.nii.gz").write_bytes(b"")
    loop = _bench_loop()
    assert loop.case_folder(tmp_path, "lung1") == tmp_path / "radiomics"
    assert loop.case_folder(tmp_path / "radiomics", "lung1") == tmp_path / "radiomics"
    assert loop.case_folder(tmp_path, "brain1") is None


def test_bench_loop_names_a_wrong_data_folder(tmp_path):
    r = _run([sys.executable, str(BENCH / "bench_loop.py"), "--data", str(tmp_path), "--json", str(tmp_path / "x.json")],
             timeout=20)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr, r.stderr
    assert str(tmp_path) in r.stderr and "lung1_image.nii.gz" in r.stderr
