"""Click-to-segment benchmark (issue 18): a deterministic robot clicker on held-out nuclei.

Objects: every nucleus (instance id) of the bundled nuclei sample whose centroid lies in the right
half (columns 256-511; the prompt models trained on the left half only). Per object:

* the previous mask at 0 clicks is the automatic model's (nuclei-2d) connected component under the
  object's deepest point (empty when that pixel is background);
* click 1 is at the object's distance-transform maximum; each next click at the distance-transform
  maximum of the larger error region (false negatives -> positive click, false positives -> negative),
  the previous result fed back as the previous mask; at most 20 clicks (a case that never reaches the
  IoU counts 20 and is reported as hitting the cap).

NoC@85 / NoC@90: mean number of clicks to reach IoU 0.85 / 0.90. Dice after 0, 1, 3, 5 clicks.
"automatic" is the automatic model's component alone (a click only picks it: NoC 1 if it is good
enough, else the cap). Latency: the wall time of each ``segment_with_prompts`` call (whole call:
normalisation of the 512x512 image, crop, click channels, model, post-processing), median and p90.

    OMP_NUM_THREADS=2 python benchmarks/bench_prompts.py [--variant NAME=MODEL ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one
from _common import write  # noqa: E402

from napari_attnseg import load_model, predict, segment_with_prompts  # noqa: E402
from napari_attnseg._paths import samples_dir  # noqa: E402
from napari_attnseg.data import read_image  # noqa: E402
from napari_attnseg.prompts.simulate import first_click, robot_session  # noqa: E402

CAP = 20


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def objects(labels: np.ndarray) -> list[np.ndarray]:
    out = []
    for i in np.unique(labels):
        if i == 0:
            continue
        obj = labels == i
        if obj.sum() >= 30 and ndi.center_of_mass(obj)[1] >= 256:
            out.append(obj)
    return out


def noc(ious: list[float], thr: float) -> int:
    for k, v in enumerate(ious):
        if k >= 1 and v >= thr:
            return k
    return CAP


def summarise(name: str, runs: list[list[float]], times: list[float]) -> dict:
    def dice_at(k):
        return float(np.mean([2 * r[min(k, len(r) - 1)] / (1 + r[min(k, len(r) - 1)]) for r in runs]))

    n85 = [noc(r, 0.85) for r in runs]
    n90 = [noc(r, 0.90) for r in runs]
    return {
        "variant": name, "objects": len(runs),
        "NoC@85": round(float(np.mean(n85)), 2), "NoC@90": round(float(np.mean(n90)), 2),
        ">=20@85": int(sum(n == CAP for n in n85)), ">=20@90": int(sum(n == CAP for n in n90)),
        "Dice@0": round(dice_at(0), 3), "Dice@1": round(dice_at(1), 3), "Dice@3": round(dice_at(3), 3),
        "Dice@5": round(dice_at(5), 3),
        "s/click (median)": round(float(np.median(times)), 3) if times else "-",
        "s/click (p90)": round(float(np.percentile(times, 90)), 3) if times else "-",
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=MODEL",
                    help="a promptable model to score (default: both=nuclei-2d-prompt)")
    ap.add_argument("--limit", type=int, default=None, help="first N objects only (smoke runs)")
    ap.add_argument("--name", default="prompts_nuclei")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="only merge the rows of earlier result files "
                    "(variants scored in separate runs, e.g. while another trained) into --name")
    args = ap.parse_args(argv)
    if args.merge:
        import json

        rows, metas = [], []
        for f in args.merge:
            data = json.loads(Path(f).read_text())
            metas.append(data["meta"])
            rows += [r for r in data["rows"] if not any(r["variant"] == q["variant"] for q in rows)]
        meta = {**metas[0], "machine": "; ".join(sorted({m["machine"] for m in metas})),
                "merged_from": [Path(f).name for f in args.merge],
                "note": "latency measured while other jobs shared the 2 cores (load average 4-11); the variants' "
                        "runs differ in load, so compare latencies with care"}
        write(args.name, rows, "# Click to segment: robot clicker on held-out nuclei (issue 18)", meta)
        return 0
    variants = [v.split("=", 1) for v in (args.variant or ["both=nuclei-2d-prompt"])]
    image = read_image(samples_dir() / "nuclei2d_image.tif").data
    labels = read_image(samples_dir() / "nuclei2d_labels.tif").data
    objs = objects(labels)[: args.limit]
    auto_model = load_model("nuclei-2d", device="cpu")
    auto = np.asarray(predict(auto_model, image, precision="fp32", return_probabilities=False).labels) > 0
    auto_cc, _ = ndi.label(auto)
    starts = []
    for obj in objs:
        c = tuple(first_click(obj).astype(int))
        starts.append(auto_cc == auto_cc[c] if auto_cc[c] else np.zeros(obj.shape, bool))

    def iou(a, b):
        return float((a & b).sum() / max((a | b).sum(), 1))

    rows = []
    auto_runs = [[iou(s, o), iou(s, o)] for s, o in zip(starts, objs)]
    rows.append(summarise("automatic (nuclei-2d, component under the click)", auto_runs, []))
    for name, spec in variants:
        model = load_model(spec, device="cpu")
        runs, times = [], []
        for obj, start in zip(objs, starts):
            def seg(points, labs, previous):
                t0 = time.perf_counter()
                res = segment_with_prompts(model, image, points, labs, previous=previous, attention=False)
                times.append(time.perf_counter() - t0)
                return res.mask

            ious, _ = robot_session(seg, obj, start, max_clicks=CAP, stop_iou=0.9)
            if len(ious) < 6:  # stopped at IoU 0.90 before 5 clicks: Dice@k beyond it = the last value
                ious = ious + [ious[-1]] * (6 - len(ious))
            runs.append(ious)
        opts = model.config.get("prompts", {})
        label = f"{name} ({spec}; channels={opts.get('channels')}, prior={opts.get('prior')})"
        rows.append(summarise(label, runs, times))
        print(rows[-1], flush=True)
    meta = {"machine": f"{cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
                       f"{torch.get_num_threads()} threads (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})",
            "objects": "nuclei sample, instances with centroid in columns 256-511 (held out), >= 30 px",
            "protocol": "robot clicker: click 1 at the object's distance-transform maximum, then at the maximum of "
                        "the larger error region; previous mask at 0 clicks = nuclei-2d's component there; 20-click cap; "
                        "a session stops once IoU >= 0.90 (later Dice@k carry that value)",
            "anchors": "RITM HRNet18 NoC@85 1.42 (GrabCut) / 3.80 (SBD), NoC@90 1.54 / 6.06"}
    write(args.name, rows, "# Click to segment: robot clicker on held-out nuclei (issue 18)", meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
