"""How much the bundled models' Dice moves when the image's intensities differ from the training data,
as they will on another scanner or microscope.

    python benchmarks/bench_robustness.py [--nuclei-model PATH] [--brain-model PATH] [--name robustness]

Scored on the held-out parts the cards use: the right half of the nuclei sample, and the test slab
(axial k 56-87 at 1 mm) of the 1 mm MNI152 sample, segmented as a user would (the engine normalises,
and resamples to the model's 2 mm and back). Changes to the raw image (the card's percentile
normalisation sees them): gamma on the intensity range, a smooth multiplicative bias field along the
first in-plane axis (MRI without bias correction), Gaussian noise. Changes after normalisation (what
the normalisation cannot undo, e.g. another field of view moving the 1st/99th percentiles): contrast
x0.9 / x1.1 and brightness -+0.05 of the normalised range. Changes of the field of view (the same
anatomy with more or less empty background around it, as another scanner's protocol gives): padded by
32 voxels of the image minimum (0 on this T1) on every side, for the nuclei too (the zero-filled
margin of a stitched mosaic or a registered image; the normalisation's statistics see it), and, brain
only, cropped to the non-zero voxels' bounding box plus 4 voxels; the mask is mapped back onto the
original grid before scoring.
Writes benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_out_option, machine, results_dir, write  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

from napari_attnseg import load_model  # noqa: E402
from napari_attnseg._paths import samples_dir  # noqa: E402
from napari_attnseg.data import read_image  # noqa: E402
from napari_attnseg.evaluation import BRAIN_TEST_SLAB_1MM  # noqa: E402
from napari_attnseg.inference import predict  # noqa: E402
from napari_attnseg.inference.normalize import apply_stats, compute_stats  # noqa: E402
from napari_attnseg.training.losses import dice_per_class  # noqa: E402

RAW = {  # name -> f(raw float image, rng) -> raw float image
    "none": lambda x, rng: x,
    "gamma 0.8": lambda x, rng: _gamma(x, 0.8),
    "gamma 1.25": lambda x, rng: _gamma(x, 1.25),
    "bias field 0.85-1.15": lambda x, rng: x * np.linspace(0.85, 1.15, x.shape[-2]).reshape(-1, 1).astype(np.float32),
    "noise 5 %": lambda x, rng: x + rng.normal(0, 0.05 * _range(x), x.shape).astype(np.float32),
}
FOV = {  # name -> f(raw image) -> (changed image, g(labels on the changed grid) -> labels on the original grid)
    "field of view +32 voxels each side": lambda x: _pad(x, 32),
    "field of view cropped to the brain + 4": lambda x: _crop(x, 4),
}
SKULL_SEED = 20261202  # used by no training run
SKULL = {  # brain only: the 1 mm MNI T1 wrapped in synthetic CSF, skull, scalp fat and skin
    "skull and scalp (synthetic), brain extraction off": False,
    "skull and scalp (synthetic), brain extraction auto": None,
}
FOV.update({name: (lambda x: _skull(x)) for name in SKULL})
FOV_2D = {"field of view +32 voxels each side"}  # the crop row needs an empty background around the object
NORMALISED = {"contrast x0.9": (0.9, 0.0), "contrast x1.1": (1.1, 0.0), "brightness -0.05": (1.0, -0.05),
              "brightness +0.05": (1.0, 0.05)}


def _range(x: np.ndarray) -> float:
    lo, hi = np.percentile(x, [1, 99])
    return float(hi - lo)


def _gamma(x: np.ndarray, g: float) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (((x - lo) / (hi - lo)) ** g * (hi - lo) + lo).astype(np.float32)


def _pad(x: np.ndarray, n: int):
    inner = tuple(slice(n, n + s) for s in x.shape)
    return np.pad(x, n, constant_values=float(x.min())), lambda lab: lab[inner]


def _crop(x: np.ndarray, margin: int):
    nz = np.nonzero(x > x.min())
    box = tuple(slice(max(0, int(i.min()) - margin), min(s, int(i.max()) + margin + 1)) for i, s in zip(nz, x.shape))

    def back(lab):
        out = np.zeros(x.shape, lab.dtype)
        out[box] = lab
        return out
    return x[box], back


def _skull(x: np.ndarray):
    from napari_attnseg.training.synthhead import wrap_in_head

    head, _, pad = wrap_in_head(x, (1.0, 1.0, 1.0), SKULL_SEED)
    inner = tuple(slice(int(b), int(b) + s) for (b, _), s in zip(pad, x.shape))
    return head, lambda lab: lab[inner]


def _shown(path: str) -> str:
    """A model path as the results file records it: relative to the repository when inside it."""
    p = Path(path).resolve() if path else None
    return str(p.relative_to(REPO)) if p and p.is_relative_to(REPO) else path


def _cases(nuclei_model, brain_model):
    """(model, raw image, spacing, reference, region scored, foreground classes) per model."""
    out = {}
    if nuclei_model:
        img = read_image(samples_dir() / "nuclei2d_image.tif").data.astype(np.float32)
        ref = (read_image(samples_dir() / "nuclei2d_labels.tif").data > 0).astype(np.uint8)
        out["nuclei-2d"] = (load_model(nuclei_model, device="cpu"), img, None, ref, (slice(None), slice(256, None)), 2)
    if brain_model:
        t1 = read_image(samples_dir() / "mni152_t1.nii.gz")
        ref = read_image(samples_dir() / "mni152_labels.nii.gz").data
        out["brain-mri-3d"] = (load_model(brain_model, device="cpu"), t1.data.astype(np.float32), t1.spacing, ref,
                               (BRAIN_TEST_SLAB_1MM,), 3)
    return out


def score(model, image, spacing, ref, region, n_classes, normalised=None, fov=None, **kw) -> list[float]:
    back = None
    if fov is not None:
        image, back = fov(image)
    if normalised is not None:
        a, b = normalised
        image = apply_stats(image[None], compute_stats(image, model.card.normalization, False))[0] * a + b
        kw["normalization"] = {"scheme": "none"}
    labels = np.asarray(predict(model, image, spacing=spacing, precision="fp32", return_probabilities=False,
                                **kw).labels)
    if back is not None:
        labels = back(labels)
    return dice_per_class(labels[region], ref[region], n_classes)


def main() -> None:
    ap = argparse.ArgumentParser()
    models = REPO / "resources" / "models"
    ap.add_argument("--nuclei-model", default=str(models / "nuclei-2d.safetensors"), help="'' to skip")
    ap.add_argument("--brain-model", default=str(models / "brain-mri-3d.safetensors"), help="'' to skip")
    ap.add_argument("--name", default="robustness")
    ap.add_argument("--only", default="", help="run only the rows whose name contains this text")
    add_out_option(ap)
    args = ap.parse_args()
    results_dir(args.out)
    cases = _cases(args.nuclei_model, args.brain_model)
    rows = []
    for label in [*RAW, *FOV, *NORMALISED]:
        if args.only and args.only not in label and label != "none":
            continue
        row = {"change": f"{label} (after normalisation)" if label in NORMALISED else label}
        for name, (model, img, spacing, ref, region, k) in cases.items():
            if label in RAW:
                d = score(model, RAW[label](img, np.random.default_rng(0)), spacing, ref, region, k)
            elif label in FOV:
                if k == 2 and label not in FOV_2D:
                    row[f"{name} Dice"] = "-"
                    continue
                extra = {"brain_extraction": SKULL[label]} if label in SKULL else {}
                d = score(model, img, spacing, ref, region, k, fov=FOV[label], **extra)
            else:
                d = score(model, img, spacing, ref, region, k, normalised=NORMALISED[label])
            if k == 2:
                row[f"{name} Dice"] = f"{d[0]:.3f}"
            else:
                row[f"{name} GM"], row[f"{name} WM"] = f"{d[0]:.3f}", f"{d[1]:.3f}"
        rows.append(row)
        print(row, flush=True)
    meta = {"machine": machine(), "nuclei_model": _shown(args.nuclei_model), "brain_model": _shown(args.brain_model)}
    write(args.name, rows, "Dice on the held-out parts when the image's intensities change (fp32, no flips)", meta)


if __name__ == "__main__":
    main()
