"""Inference speed and memory, side by side with MONAI (the tool users would use instead).

    python benchmarks/bench_inference.py [--quick] [--repeats N]

1. This engine vs MONAI's sliding_window_inference on the SAME model and weights (the bundled
   models), same tile, overlap 0.25 and Gaussian weighting: a 2D 1024x1024 image and a 3D 160^3
   volume. Throughput, ratio, peak RSS, Dice between the two masks. Ours runs with attention maps on.
2. Our attention_unet vs MONAI's AttentionUnet at equal channels (16..256), model only.
3. A 256x512x512 int16 CT-like volume through the 3D model with attention maps on, with the tile
   its card gives (what a user gets without options): wall time and
   peak RSS (a fresh subprocess), against the input's size as float32.
4. Achieved GFLOP/s of the forward passes vs this machine's own matmul peak (bf16 and fp32).
Writes benchmarks/results/inference.{json,md}. Needs the `bench` extra (monai).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_out_option, dice, machine, median_time, require_monai, results_dir, write  # noqa: E402

from napari_attnseg import load_model, predict  # noqa: E402
from napari_attnseg.inference.normalize import apply_stats, compute_stats  # noqa: E402


def nuclei_1024() -> np.ndarray:
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image

    img = read_image(samples_dir() / "nuclei2d_image.tif").data
    return np.tile(img, (2, 2))


def brain_160() -> np.ndarray:
    from scipy import ndimage

    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image

    t1 = read_image(samples_dir() / "mni152_t1.nii.gz").data.astype(np.float32)
    half = ndimage.zoom(t1, 0.5, order=1)  # the model's 2 mm grid
    out = np.zeros((160, 160, 160), np.float32)
    s = [min(a, 160) for a in half.shape]
    out[: s[0], : s[1], : s[2]] = half[: s[0], : s[1], : s[2]]
    return out


def monai_predict(model, image, tile, overlap=0.25):
    from monai.inferers import sliding_window_inference

    stats = compute_stats(image, model.card.normalization, False)
    x = torch.from_numpy(apply_stats(image[None], stats)[None])
    with torch.inference_mode():
        logits = sliding_window_inference(x, roi_size=tile, sw_batch_size=4, predictor=model, overlap=overlap,
                                          mode="gaussian", sigma_scale=0.125)
    return logits.argmax(1)[0].numpy()


def rss_mb(field="VmRSS") -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_during(fn):
    """(seconds, result, MB that the call added to the process's peak RSS) - Linux: resets VmHWM first."""
    import time

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS counter of this process
    except OSError:
        pass
    before = rss_mb()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    return dt, out, rss_mb("VmHWM") - before


def interleaved(fns: dict, repeats: int) -> dict:
    """Run each callable once to warm up, then ``repeats`` rounds in turn (A B C A B C ...), so that
    load from other users of the machine hits all of them alike; medians of time and added peak RSS."""
    import statistics

    out = {k: {"t": [], "mem": [], "result": None} for k in fns}
    for k, fn in fns.items():
        out[k]["result"] = fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            dt, res, mem = peak_during(fn)
            out[k]["t"].append(dt)
            out[k]["mem"].append(mem)
            out[k]["result"] = res
    return {k: (statistics.median(v["t"]), v["result"], statistics.median(v["mem"])) for k, v in out.items()}


def engine_vs_monai(name, model, image, tile, repeats):
    px = image.size
    # the sliding window against MONAI's: the same work, so without the brain-extraction check a 3D brain
    # model's card asks for (it is timed apart, in its own column)
    fns = {
        "ours": lambda: predict(model, image, tile=tile, overlap=0.25, attention=True, return_probabilities=False,
                                brain_extraction=False),
        "fp32": lambda: predict(model, image, tile=tile, overlap=0.25, attention=True, precision="fp32",
                                return_probabilities=False, brain_extraction=False),
        "monai": lambda: monai_predict(model, image, tile),
    }
    if getattr(model.card, "brain_extraction", None) == "auto":
        fns["default"] = lambda: predict(model, image, tile=tile, overlap=0.25, attention=True,
                                         return_probabilities=False)
    r = interleaved(fns, repeats)
    (t_ours, ours, m_ours), (t_fp32, ours32, _), (t_monai, theirs, m_monai) = r["ours"], r["fp32"], r["monai"]
    multi = int(max(ours.labels.max(), theirs.max())) > 1
    return {
        "case": name, "shape": "x".join(map(str, image.shape)), "tile": tile[0],
        "ours auto (Mpx/s)": f"{px / t_ours / 1e6:.2f}", "ours fp32 (Mpx/s)": f"{px / t_fp32 / 1e6:.2f}",
        "MONAI fp32 (Mpx/s)": f"{px / t_monai / 1e6:.2f}", "speed-up (auto)": f"{t_monai / t_ours:.2f}x",
        "peak RSS added ours / MONAI (MB)": f"{m_ours:.0f} / {m_monai:.0f}",
        "Dice ours-auto vs MONAI": f"{dice(ours.labels, theirs):.5f}",
        "Dice ours-fp32 vs MONAI": f"{dice(ours32.labels, theirs):.5f}",
        "Dice ours-auto vs ours-fp32": f"{dice(ours.labels, ours32.labels):.5f}",
        "voxels with the same class (auto vs MONAI)": f"{(np.asarray(ours.labels) == theirs).mean():.5f}"
                                                       + (" (3 classes)" if multi else ""),
        "precision (auto)": ours.precision,
        "ours with the card's brain-extraction check (Mpx/s)": f"{px / r['default'][0] / 1e6:.2f}"
                                                                 if "default" in r else "-",
    }


def model_only(repeats):
    from monai.networks.nets import AttentionUnet

    from napari_attnseg import create_model
    from napari_attnseg.inference.precision import build_inference_copy

    rows = []
    for dims, shape in ((2, (4, 1, 256, 256)), (3, (1, 1, 96, 96, 96))):
        ours = create_model("attention_unet", spatial_dims=dims).eval()
        fast = build_inference_copy(ours, torch.device("cpu"))  # what the engine runs: BN folded, channels-last
        theirs = AttentionUnet(spatial_dims=dims, in_channels=1, out_channels=2, channels=(16, 32, 64, 128, 256),
                               strides=(2, 2, 2, 2)).eval()
        x = torch.randn(*shape)
        xc = x.contiguous(memory_format=torch.channels_last if dims == 2 else torch.channels_last_3d)

        def fast_bf16():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fast(xc, return_attention=True)

        with torch.inference_mode():
            r = interleaved({"ours": lambda: ours(x), "fast": fast_bf16, "monai": lambda: theirs(x)}, repeats)
        n = x.numel()
        rows.append({"model": f"attention_unet {dims}D", "input": "x".join(map(str, shape)),
                     "params ours / MONAI (M)": f"{sum(p.numel() for p in ours.parameters()) / 1e6:.2f} / "
                                                f"{sum(p.numel() for p in theirs.parameters()) / 1e6:.2f}",
                     "ours fp32 (Mpx/s)": f"{n / r['ours'][0] / 1e6:.2f}",
                     "ours engine path: bf16 + channels-last + BN folded + maps (Mpx/s)":
                         f"{n / r['fast'][0] / 1e6:.2f}",
                     "MONAI fp32 (Mpx/s)": f"{n / r['monai'][0] / 1e6:.2f}",
                     "ours engine path / MONAI": f"{r['monai'][0] / r['fast'][0]:.2f}x"})
    return rows


def gflops(repeats):
    from torch.utils.flop_counter import FlopCounterMode

    from napari_attnseg import create_model
    from napari_attnseg.inference.precision import build_inference_copy

    def peak(dtype):
        a = torch.randn(2048, 2048, dtype=dtype)
        b = torch.randn(2048, 2048, dtype=dtype)
        t, _ = median_time(lambda: a @ b, repeats + 2)
        return 2 * 2048**3 / t / 1e9

    rows = []
    for dims, shape in ((2, (8, 1, 256, 256)), (3, (1, 1, 96, 96, 96))):
        m = build_inference_copy(create_model("attention_unet", spatial_dims=dims).eval(), torch.device("cpu"))
        fmt = torch.channels_last if dims == 2 else torch.channels_last_3d
        x = torch.randn(*shape).contiguous(memory_format=fmt)
        with torch.inference_mode():
            with FlopCounterMode(display=False) as fc:
                m(x)
            flops = fc.get_total_flops()
            p32 = peak(torch.float32)  # the peaks are measured next to each forward: same load
            t32, _ = median_time(lambda: m(x), repeats)
            p16 = peak(torch.bfloat16)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                t16, _ = median_time(lambda: m(x), repeats)
        rows.append({"forward (engine path)": f"attention_unet {dims}D {'x'.join(map(str, shape))}",
                     "GFLOP": f"{flops / 1e9:.1f}",
                     "fp32 GFLOP/s": f"{flops / t32 / 1e9:.0f}", "fp32 matmul peak": f"{p32:.0f}",
                     "fp32 % of peak": f"{100 * flops / t32 / 1e9 / p32:.0f}%",
                     "bf16 GFLOP/s": f"{flops / t16 / 1e9:.0f}", "bf16 matmul peak": f"{p16:.0f}",
                     "bf16 % of peak": f"{100 * flops / t16 / 1e9 / p16:.0f}%"})
    return rows


CT_SCRIPT = r"""
import json, sys, time
import numpy as np

def status_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

from napari_attnseg import load_model, predict
shape = tuple(json.loads(sys.argv[1]))
rng = np.random.default_rng(0)
vol = np.full(shape, -1000, np.int16)
z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
body = ((y - shape[1] / 2) ** 2 / (0.42 * shape[1]) ** 2 + (x - shape[2] / 2) ** 2 / (0.45 * shape[2]) ** 2) < 1
vol[:, body[0]] = 40
spine = (y - 0.7 * shape[1]) ** 2 + (x - shape[2] / 2) ** 2 < (0.05 * shape[1]) ** 2
vol[:, spine[0]] = 700  # bone: a CT in HU (a brain model's brain-extraction check skips it, as on a real CT)
vol += rng.integers(-20, 20, shape, dtype=np.int16)
del z, y, x, body, spine
model = load_model("brain-mri-3d", device="cpu")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM: the peak below is the peak during predict
base = status_mb("VmRSS")
t0 = time.perf_counter()
pred = predict(model, vol, attention=True, return_probabilities=False)  # the card's tile, as a user runs it
dt = time.perf_counter() - t0
peak = status_mb("VmHWM")
print(json.dumps({"seconds": dt, "peak_rss_mb": peak, "before_mb": base, "precision": pred.precision,
                  "tiles": pred.params["tiles"], "tile": pred.params["tile"]}))
"""


def ct_volume(shape):
    out = subprocess.run([sys.executable, "-c", CT_SCRIPT, json.dumps(list(shape))], capture_output=True, text=True,
                         check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    f32 = np.prod(shape) * 4 / 2**20
    return {"volume": "x".join(map(str, shape)) + " int16", "wall (s)": f"{r['seconds']:.1f}",
            "Mvox/s": f"{np.prod(shape) / r['seconds'] / 1e6:.2f}", "peak RSS (MB)": f"{r['peak_rss_mb']:.0f}",
            "RSS before predict (MB)": f"{r['before_mb']:.0f}", "input as float32 (MB)": f"{f32:.0f}",
            "input int16 (MB)": f"{np.prod(shape) * 2 / 2**20:.0f}",
            "peak / float32 input": f"{r['peak_rss_mb'] / f32:.2f}x",
            "(peak - before) / float32 input": f"{(r['peak_rss_mb'] - r['before_mb']) / f32:.2f}x",
            "tile": "x".join(map(str, r["tile"])), "precision": r["precision"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat (smoke test)")
    ap.add_argument("--repeats", type=int, default=3)
    add_out_option(ap)
    args = ap.parse_args()
    require_monai("bench_inference.py")
    results = results_dir(args.out)
    reps = 1 if args.quick else args.repeats
    torch.manual_seed(0)
    m2 = load_model("nuclei-2d", device="cpu")
    m3 = load_model("brain-mri-3d", device="cpu")
    img2 = nuclei_1024()[:256, :256] if args.quick else nuclei_1024()
    img3 = brain_160()[:64, :64, :64] if args.quick else brain_160()
    rows = [engine_vs_monai("2D nuclei-2d", m2, img2, (256, 256), reps),
            engine_vs_monai("3D brain-mri-3d", m3, img3, (64, 64, 64), reps)]
    meta = {"machine": machine(), "repeats": reps, "quick": args.quick, "monai": __import__("monai").__version__}
    text = write("inference_vs_monai", rows, "### Sliding-window inference vs MONAI (same model and weights)", meta)
    text += write("model_only", model_only(reps), "### Attention U-Net forward, ours vs MONAI AttentionUnet", meta)
    text += write("gflops", gflops(reps), "### Achieved GFLOP/s vs this machine's matmul peak", meta)
    ct_shape = (32, 128, 128) if args.quick else (256, 512, 512)
    text += write("ct_volume", [ct_volume(ct_shape)], "### A CT-sized volume with attention maps", meta)
    (results / "inference.md").write_text(text)
    combined = {"meta": meta}
    for part in ("inference_vs_monai", "model_only", "gflops", "ct_volume"):
        combined[part] = json.loads((results / f"{part}.json").read_text())["rows"]
    (results / "inference.json").write_text(json.dumps(combined, indent=2))


if __name__ == "__main__":
    main()
