"""nuclei-2d on bright-field colour pictures (H&E, IHC): which grey image to segment.

    python benchmarks/bench_brightfield.py [--name brightfield]

No H&E slide with nuclei outlined ships with the project, so the reference is the nuclei sample rendered as
an H&E slide by the Beer-Lambert law: hematoxylin from the fluorescence (faint everywhere, strong on nuclei),
eosin from a smooth random field (weaker on nuclei), with the stain vectors of Macenko's reference H&E
(0.5626, 0.7201, 0.4062 / 0.2159, 0.8012, 0.5581), not the ones the deconvolution uses, then camera noise
(sigma 3 of 255) and 8 bits. Dice on the held-out right half (columns 256-511, as the card's) for what a user
could segment: the hematoxylin of the deconvolution (what the product does), the red channel, the grey
(luminance) and the inverted grey (both need a step the user must find). On scikit-image's
immunohistochemistry picture (a real hematoxylin-DAB slide, no reference) the share of the picture called
nuclei and the objects found, for the same choices. Writes benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_out_option, dice, machine, results_dir, write  # noqa: E402

from napari_attnseg import load_model  # noqa: E402
from napari_attnseg._paths import samples_dir  # noqa: E402
from napari_attnseg.data import read_image  # noqa: E402
from napari_attnseg.data.stains import hematoxylin  # noqa: E402
from napari_attnseg.inference import predict  # noqa: E402

H_REF = np.array([0.5626, 0.7201, 0.4062])
E_REF = np.array([0.2159, 0.8012, 0.5581])


def render_he(fluorescence: np.ndarray, seed: int = 0) -> np.ndarray:
    """An 8-bit H&E-like RGB picture of a fluorescence nuclei image (module docstring)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    lo, hi = np.percentile(fluorescence, [1, 99.8])
    f = np.clip((fluorescence.astype(np.float64) - lo) / (hi - lo), 0, 1)
    h = 0.08 + 0.85 * f
    field = ndimage.gaussian_filter(rng.standard_normal(f.shape), 12)
    e = (0.35 + 0.6 * field / (np.abs(field).max() + 1e-9)).clip(0.1, 0.7) * (1 - 0.6 * f)
    density = h[..., None] * H_REF + e[..., None] * E_REF
    rgb = 255.0 * 10.0 ** (-density) + rng.normal(0, 3, density.shape)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def choices(rgb: np.ndarray) -> dict[str, np.ndarray]:
    grey = rgb[..., :3].astype(np.float32) @ np.array([0.2125, 0.7154, 0.0721], np.float32)
    return {"hematoxylin (deconvolution; the default)": hematoxylin(rgb), "red channel": rgb[..., 0],
            "grey (luminance)": grey, "inverted grey": 255.0 - grey}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", default="brightfield")
    ap.add_argument("--model", default="nuclei-2d")
    add_out_option(ap)
    args = ap.parse_args()
    results_dir(args.out)
    from scipy import ndimage
    from skimage.data import immunohistochemistry

    model = load_model(args.model, device="cpu")
    img = read_image(samples_dir() / "nuclei2d_image.tif").data
    ref = np.asarray(read_image(samples_dir() / "nuclei2d_labels.tif").data) > 0
    held = (slice(None), slice(256, None))
    rows = []
    fluo = np.asarray(predict(model, img, device="cpu", return_probabilities=False).labels)
    rows.append({"picture": "nuclei sample (fluorescence, as trained)", "segmented": "the image",
                 "Dice (right half)": round(dice(fluo[held], ref[held]), 3), "foreground share": round(float((fluo > 0).mean()), 3),
                 "objects": int(ndimage.label(fluo > 0)[1]), "warned": "no"})
    for picture, rgb in (("nuclei sample rendered as H&E", render_he(np.asarray(img))), ("scikit-image IHC (H-DAB)", immunohistochemistry())):
        for what, grey in choices(rgb).items():
            pred = predict(model, grey, device="cpu", return_probabilities=False)
            lab = np.asarray(pred.labels) > 0
            row = {"picture": picture, "segmented": what,
                   "Dice (right half)": round(dice(lab[held], ref[held]), 3) if "rendered" in picture else "-",
                   "foreground share": round(float(lab.mean()), 3), "objects": int(ndimage.label(lab)[1]),
                   "warned": "yes" if pred.warnings else "no"}
            rows.append(row)
            print(row, flush=True)
    meta = {"machine": machine(), "model": args.model, "reference": "nuclei sample labels, right half (held out)"}
    print(write(args.name, rows, "nuclei-2d on bright-field colour pictures: which grey image to segment", meta))


if __name__ == "__main__":
    main()
