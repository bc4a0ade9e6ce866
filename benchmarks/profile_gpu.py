"""Where a CUDA prediction spends its time (run on a GPU machine).

    python benchmarks/profile_gpu.py

For the 2D 1024^2 case, the 3D 160^3 case and a 256x512x512 CT volume (attention maps on): the engine's
own timings (brain extraction off: the sliding window alone), the GPU's busy time (sum of kernel times from torch.profiler) against the wall time, the
top CUDA kernels and the top Python functions (cProfile, by own time).
"""

import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gpu import ct_volume  # noqa: E402
from bench_inference import brain_160, nuclei_1024  # noqa: E402

from napari_attnseg import load_model, predict  # noqa: E402

if not torch.cuda.is_available():
    sys.exit("profile_gpu.py needs a CUDA GPU (it profiles CUDA kernels); on a CPU run benchmarks/bench_inference.py.")

CASES = (("nuclei-2d 1024^2", "nuclei-2d", nuclei_1024, 256), ("brain-mri-3d 160^3", "brain-mri-3d", brain_160, 64),
         ("brain-mri-3d CT 256x512x512", "brain-mri-3d", lambda: ct_volume((256, 512, 512)), None))

for title, name, make, tile in CASES:
    m = load_model(name, device="cuda")
    image = make()
    run = lambda: predict(m, image, tile=tile, attention=True, return_probabilities=False,  # noqa: E731
                          brain_extraction=False)
    for _ in range(2):
        run()
    torch.cuda.synchronize()
    walls, shares = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        pred = run()
        torch.cuda.synchronize()
        walls.append(time.perf_counter() - t0)
        shares.append(pred.timings["model_s"] / pred.timings["total_s"])
    print(f"===== {title}: wall median {statistics.median(walls):.3f} s, model share {statistics.median(shares):.0%},"
          f" timings {pred.timings}, params {pred.params}", flush=True)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        run()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    busy = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA) / 1e6
    print(f"GPU busy {busy:.3f} s of {wall:.3f} s wall ({busy / wall:.0%})")
    print(events.table(sort_by="self_device_time_total", row_limit=12, max_name_column_width=60))
    print(events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60))
    pr = cProfile.Profile()
    pr.enable()
    run()
    torch.cuda.synchronize()
    pr.disable()
    pstats.Stats(pr).sort_stats("tottime").print_stats(14)
    pstats.Stats(pr).sort_stats("cumtime").print_stats("napari_attnseg", 30)
