"""Where a CUDA prediction spends its time (cProfile of the engine; run on a GPU machine)."""

import cProfile
import pstats
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import brain_160, nuclei_1024  # noqa: E402

from napari_attnseg import load_model, predict  # noqa: E402

for name, image, tile in (("nuclei-2d", nuclei_1024(), 256), ("brain-mri-3d", brain_160(), 64)):
    m = load_model(name, device="cuda")
    for _ in range(3):
        predict(m, image, tile=tile, attention=True, return_probabilities=False)
    torch.cuda.synchronize()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(5):
        predict(m, image, tile=tile, attention=True, return_probabilities=False)
    torch.cuda.synchronize()
    pr.disable()
    print("=====", name)
    pstats.Stats(pr).sort_stats("tottime").print_stats(22)
