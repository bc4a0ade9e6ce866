"""One click at the deepest point of each held-out nucleus (right half) of the nuclei sample, at its own
size, upsampled 2x and downsampled 2x, with and without ``segment_with_prompts(diameter=...)``: mean IoU,
the number of nuclei and the median seconds per click (docs/prompts.md, "Objects of another size").

    python scripts/probe_click_scale.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from napari_attnseg import load_model
from napari_attnseg.prompts import segment_with_prompts

SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "samples"


def run(model, image: np.ndarray, labels: np.ndarray, diameter: float | None, n: int = 20) -> tuple[float, int, float]:
    half = labels.shape[1] // 2
    ious, seconds = [], []
    for i in [i for i in np.unique(labels[:, half:]) if i][:n]:
        obj = labels == i
        if obj[:, :half].any():  # nuclei cut by the middle are not held out
            continue
        depth = ndimage.distance_transform_edt(obj)
        point = np.unravel_index(np.argmax(depth), depth.shape)
        t = time.perf_counter()
        res = segment_with_prompts(model, image, [point], [1], diameter=diameter, attention=False)
        seconds.append(time.perf_counter() - t)
        ious.append((res.mask & obj).sum() / (res.mask | obj).sum())
    return float(np.mean(ious)), len(ious), float(np.median(seconds))


def main() -> None:
    image = tifffile.imread(SAMPLES / "nuclei2d_image.tif").astype(np.float32)
    labels = tifffile.imread(SAMPLES / "nuclei2d_labels.tif")
    model = load_model("nuclei-2d-prompt", device="cpu")
    cases = {"native": (image, labels, 25.0), "2x": (ndimage.zoom(image, 2, order=1), ndimage.zoom(labels, 2, order=0), 50.0),
             "0.5x": (ndimage.zoom(image, 0.5, order=1), ndimage.zoom(labels, 0.5, order=0), 12.5)}
    print("| image | diameter | mean IoU | nuclei | s/click |\n|---|---|---|---|---|")
    for name, (img, lab, diameter) in cases.items():
        for d in (None, diameter):
            iou, n, s = run(model, img, lab, d)
            print(f"| {name} | {d if d else '-'} | {iou:.3f} | {n} | {s:.2f} |", flush=True)


if __name__ == "__main__":
    main()
