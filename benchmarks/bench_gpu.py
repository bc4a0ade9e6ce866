"""Inference on a GPU, side by side with MONAI (run it where CUDA is available).

    python benchmarks/bench_gpu.py [--repeats 5]

1. This engine (default precision: bf16 autocast, channels-last, attention maps on) vs MONAI's
   sliding_window_inference in fp32 and in bf16 autocast, on the SAME model and weights (the bundled
   models), same tile, overlap 0.25, Gaussian weighting, tiles batched: 2D 1024x1024 and 3D 160^3.
   Throughput, ratio and the Dice between the masks.
2. A 512x512x256 int16 CT-like volume through the 3D model with attention maps on (the card's tile
   and a larger one): wall time from a NumPy array in host memory to the labels and maps in host
   memory, and the GPU memory peak.
Every timing is the median of ``--repeats`` runs after one warm-up, with the device synchronised.
Writes benchmarks/results/gpu.{json,md} (or into --out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dice as dice_fg  # noqa: E402  (foreground Dice; both empty = 1)
from _common import require_monai  # noqa: E402
from bench_inference import brain_160, nuclei_1024  # noqa: E402

from napari_attnseg import load_model, predict  # noqa: E402
from napari_attnseg.inference.normalize import apply_stats, compute_stats  # noqa: E402


def timed(fn, repeats):
    out = fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def monai_labels(model, image, tile, precision):
    from monai.inferers import sliding_window_inference

    stats = compute_stats(image, model.card.normalization, False)
    x = torch.from_numpy(apply_stats(image[None], stats)[None]).cuda()
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits = sliding_window_inference(x, roi_size=tile, sw_batch_size=16, predictor=model, overlap=0.25,
                                          mode="gaussian")
    return logits.float().argmax(1)[0].cpu().numpy()


def ct_volume(shape):
    rng = np.random.default_rng(0)
    vol = np.full(shape, -1000, np.int16)
    _, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    body = ((y - shape[1] / 2) ** 2 / (0.42 * shape[1]) ** 2 + (x - shape[2] / 2) ** 2 / (0.45 * shape[2]) ** 2) < 1
    vol[:, body[0]] = 40
    spine = (y - 0.7 * shape[1]) ** 2 + (x - shape[2] / 2) ** 2 < (0.05 * shape[1]) ** 2
    vol[:, spine[0]] = 700  # bone, as in a real CT
    vol += rng.integers(-20, 20, shape, dtype=np.int16)
    return vol


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--no-ct", action="store_true", help="leave out the CT-sized volume (part 2)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU; on a CPU run benchmarks/bench_inference.py.")
    require_monai("bench_gpu.py")
    gpu = f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    rows = []
    for name, model_name, image, tile in (("2D nuclei-2d", "nuclei-2d", nuclei_1024(), [256, 256]),
                                          ("3D brain-mri-3d", "brain-mri-3d", brain_160(), [64, 64, 64])):
        model = load_model(model_name, device="cuda").eval()
        t_ours, ours = timed(lambda m=model, im=image, t=tile: predict(m, im, tile=t, overlap=0.25, attention=True,
                                                                      return_probabilities=False,
                                                                      brain_extraction=False), args.repeats)
        t_m32, m32 = timed(lambda m=model, im=image, t=tile: monai_labels(m, im, t, "fp32"), args.repeats)
        t_m16, m16 = timed(lambda m=model, im=image, t=tile: monai_labels(m, im, t, "bf16"), args.repeats)
        mp = image.size / 1e6
        rows.append({"case": name, "shape": "x".join(map(str, image.shape)), "tile": tile[0],
                     "ours auto, maps on (Mpx/s)": f"{mp / t_ours:.1f}", "MONAI fp32 (Mpx/s)": f"{mp / t_m32:.1f}",
                     "MONAI bf16 (Mpx/s)": f"{mp / t_m16:.1f}", "ours / MONAI fp32": f"{t_m32 / t_ours:.2f}x",
                     "ours / MONAI bf16": f"{t_m16 / t_ours:.2f}x",
                     "Dice ours vs MONAI fp32": f"{dice_fg(np.asarray(ours.labels), m32):.5f}",
                     "precision (auto)": ours.precision})
        print(rows[-1], flush=True)
    ct_rows = []
    model = load_model("brain-mri-3d", device="cuda")
    vol = ct_volume((256, 512, 512))
    for tile in () if args.no_ct else (None, [64, 128, 128]):
        torch.cuda.reset_peak_memory_stats()
        t, pred = timed(lambda tl=tile: predict(model, vol, attention=True, return_probabilities=False, tile=tl,
                                                   brain_extraction=False),
                        args.repeats)
        ct_rows.append({"volume": "256x512x512 int16 (axes z, y, x)", "tile": "x".join(map(str, pred.params["tile"])),
                        "wall (s)": f"{t:.2f}", "Mvox/s": f"{vol.size / t / 1e6:.0f}",
                        "GPU memory peak (GB)": f"{torch.cuda.max_memory_allocated() / 2**30:.2f}",
                        "model share of the wall time": f"{pred.timings['model_s'] / pred.timings['total_s']:.0%}",
                        "precision": pred.precision})
        print(ct_rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"machine": gpu, "repeats": args.repeats, "compiled": os.environ.get("ATTNSEG_COMPILE") == "1"}
    (out / "gpu.json").write_text(json.dumps({"meta": meta, "engine_vs_monai": rows, "ct": ct_rows}, indent=2))
    lines = []
    for title, rs in (("### GPU: sliding-window inference vs MONAI (same model and weights)", rows),
                      ("### GPU: a CT-sized volume with attention maps", ct_rows)):
        if not rs:
            continue
        cols = list(rs[0])
        lines += [title, "", f"Machine: {gpu}; medians of {args.repeats}", "", "| " + " | ".join(cols) + " |",
                  "|" + "---|" * len(cols)] + ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rs] + [""]
    (out / "gpu.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
