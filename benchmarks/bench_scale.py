"""nuclei-2d on the nuclei sample at another magnification (issue 19): Dice with and without the
object diameter.

    OMP_NUM_THREADS=1 python benchmarks/bench_scale.py [--model PATH] [--scales 0.5,2] [--name scale]

The image is rescaled by s (linear interpolation, ``scipy.ndimage.zoom(order=1, grid_mode=True)``)
and the reference mask the same way with nearest neighbour; Dice is taken on the right half
(x >= width / 2: the card's test split, rescaled), fp32, no flips. Rows: native scale (s = 1), then
per s: the rescaled image segmented as it is, with the true diameter given (card diameter x s), and
with ``diameter="auto"`` (its estimate and passes recorded). Writes benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_out_option, machine, results_dir, write  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

from napari_attnseg import load_model  # noqa: E402
from napari_attnseg._paths import samples_dir  # noqa: E402
from napari_attnseg.data import read_image  # noqa: E402
from napari_attnseg.inference import predict  # noqa: E402
from napari_attnseg.training.losses import dice_per_class  # noqa: E402


def _shown(path: str) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else path


def rescale(image: np.ndarray, ref: np.ndarray, s: float):
    if s == 1:
        return image, ref
    return (ndimage.zoom(image, s, order=1, grid_mode=True, mode="nearest"),
            ndimage.zoom(ref, s, order=0, grid_mode=True, mode="nearest"))


def right_half_dice(labels, ref) -> float:
    h = ref.shape[1] // 2
    return dice_per_class(np.asarray(labels)[:, h:], ref[:, h:], 2)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "resources" / "models" / "nuclei-2d.safetensors"))
    ap.add_argument("--scales", default="0.5,2")
    ap.add_argument("--name", default="scale")
    add_out_option(ap)
    args = ap.parse_args()
    results_dir(args.out)
    model = load_model(args.model, device="cpu")
    card_d = model.card.object_diameter
    image = read_image(samples_dir() / "nuclei2d_image.tif").data.astype(np.float32)
    ref = (read_image(samples_dir() / "nuclei2d_labels.tif").data > 0).astype(np.uint8)

    def run(img, r, diameter=None):
        t0 = time.perf_counter()
        pred = predict(model, img, precision="fp32", return_probabilities=False, diameter=diameter)
        return right_half_dice(pred.labels, r), time.perf_counter() - t0, pred

    native, t_native, _ = run(image, ref)
    rows = [{"image": "native (1x)", "diameter": "-", "right-half Dice": f"{native:.4f}", "vs native": "-",
             "scale used": "1", "seconds": f"{t_native:.1f}"}]
    print(rows[-1], flush=True)
    for s in (float(x) for x in args.scales.split(",")):
        img, r = rescale(image, ref, s)
        for label, diameter in (("none", None), (f"{card_d * s:.1f} (given)", card_d * s), ("auto", "auto")):
            d, t, pred = run(img, r, diameter)
            shown = label
            if diameter == "auto":
                est = pred.params.get("diameter_measured")
                shown = f"auto: {est:.1f} (true {card_d * s:.1f}), {len(pred.params['diameter_passes'])} passes"
            rows.append({"image": f"{s:g}x ({img.shape[0]}x{img.shape[1]})", "diameter": shown,
                         "right-half Dice": f"{d:.4f}", "vs native": f"{d - native:+.4f}",
                         "scale used": f"{pred.params.get('scale', 1.0):.3g}", "seconds": f"{t:.1f}"})
            print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    meta = {"machine": machine(), "threads": os.environ.get("OMP_NUM_THREADS"), "model": _shown(args.model),
            "card_object_diameter": card_d, "load_average_1min_at_end": round(load, 1)}
    write(args.name, rows, "nuclei-2d on the nuclei sample rescaled (reference rescaled with nearest neighbour): "
                           "Dice of the right half, fp32, no flips. Seconds: wall clock on a shared machine "
                           f"(1-minute load average {load:.1f} at the end), for orientation only", meta)


if __name__ == "__main__":
    main()
