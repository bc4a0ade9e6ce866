"""Training data for ``lesion-3d-prompt`` (issue 18): a class-agnostic 3D click-to-segment model.

Every 3D case in ``../shared/data`` except the held-out one (radiomics ``lung1``, the CT tumour of the
click benchmark, is never read here):

* the MNI152 T1 template (1 mm), resampled to several spacings, thin and thick slices (0.6-1.2 mm
  in-plane, 1-6.5 mm between slices) and with the thick axis along each of the three anatomical axes
  (the array is transposed so the thick axis is first, as a clinical series is);
* radiomics ``brain1`` (MRI, 0.78 x 0.78 x 6.5 mm) with its real tumour.

Outside the (skull-stripped) template's brain, most volumes get a faint texture and a network of thin
bright tubes, unlabelled (a stand-in for lung parenchyma and vessels around a nodule).

Into each volume go synthetic lesions, so there are many objects of varied size, shape and contrast:
smooth, randomly deformed and rotated ellipsoids of 5-40 mm, brighter or darker than their
surroundings (by 10-80 % of the image's 1-99 % range), soft edges (partial volume), texture, some with
a core of another intensity (necrotic / ring-enhancing look). The label is one class, "object": each
connected component is one object for the click simulator. One extra MNI-based volume with its own
spacing (4.5 x 0.65 x 0.65 mm), lesions and noise, its centre 24 x 192 x 192 voxels only (the validation
robot runs every epoch), is the validation case (the same template, so it checks the fit to lesions,
not to unseen anatomy; lung1 is the real test).

    python scripts/build_lesion_dataset.py --out /tmp/lesion_ds [--seed 0] [--p-anywhere 0.25] [--partial-volume] [--small]

Writes an exported dataset (TIFF layout, float32 images, ``manifest.json``) and ``split.json``
(train: every case but ``val``; val: ``val``) for the trainer's ``--split``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from napari_attnseg.data import read_image  # noqa: E402
from napari_attnseg.data.export import export_case  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HELD_OUT = "radiomics/lung1"  # the 3D tumour case of benchmarks/bench_prompts.py --case lung1

# (name, spacing (thick first, in mm), which MNI axis is the thick one (0 = z, 1 = y, 2 = x), lesions)
MNI_VARIANTS = [
    ("mni_ax_5x06", (5.0, 0.6, 0.6), 0, 30),
    ("mni_ax_3x08", (3.0, 0.8, 0.8), 0, 30),
    ("mni_ax_65x078", (6.5, 0.78, 0.78), 0, 22),
    ("mni_iso_1", (1.0, 1.0, 1.0), 0, 40),
    ("mni_cor_4x07", (4.0, 0.7, 0.7), 1, 30),
    ("mni_sag_2x1", (2.0, 1.0, 1.0), 2, 35),
    ("mni_ax_15x12", (1.5, 1.2, 1.2), 0, 30),
]
VAL_VARIANT = ("val", (4.5, 0.65, 0.65), 0, 8)
VAL_SIZE = (24, 192, 192)  # the centre of the validation volume only


def resample_mni(t1: np.ndarray, spacing, thick_axis: int) -> np.ndarray:
    """The 1 mm template (z, y, x) with ``thick_axis`` moved first and resampled to ``spacing``."""
    order = [thick_axis] + [a for a in range(3) if a != thick_axis]
    vol = np.transpose(t1, order).astype(np.float32)
    if thick_axis != 0:
        vol = vol[:, ::-1]  # a coronal/sagittal stack: the head upright in-plane is no rule either
    zoom = [1.0 / s for s in spacing]
    sigma = [max(0.0, (s - 1.0) / 2.355) for s in spacing]  # the slab profile of a thick slice
    vol = ndi.gaussian_filter(vol, sigma) if any(sigma) else vol
    return ndi.zoom(vol, zoom, order=1, prefilter=False)


def smooth_noise(shape, rng, sigma) -> np.ndarray:
    f = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return f / max(float(f.std()), 1e-6)


def lesion_shape(spacing, rng, diameter_mm, partial_volume: bool = False):
    """(alpha in [0, 1] over a local box, core mask) of a deformed rotated ellipsoid, soft edge."""
    sp = np.asarray(spacing, float)
    semi = diameter_mm / 2 * rng.uniform(0.55, 1.45, 3)
    semi = np.maximum(semi, 2.0)
    half = np.ceil(semi.max() * 1.5 / sp).astype(int) + 2
    grids = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, sp)], indexing="ij")
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))  # a random rotation
    p = np.stack([g.ravel() for g in grids])
    pr = q @ p
    r = np.sqrt(sum((pr[i] / semi[i]) ** 2 for i in range(3))).reshape(grids[0].shape)
    # smooth radial deformation: lumps and dents over ~ half the lesion's size
    shape = r.shape
    sig = np.maximum(semi.mean() / 2.5 / sp, 0.7)
    lumps = 1 + rng.uniform(0.08, 0.3) * smooth_noise(shape, rng, sig)
    width = rng.uniform(0.02, 0.12)  # soft edge (relative to the radius)
    core_r = rng.uniform(0.35, 0.7)
    core = r * lumps < core_r
    if not partial_volume or sp[0] <= 1.5:
        alpha = 1 / (1 + np.exp(-(1 - r * lumps) / width))
        return alpha.astype(np.float32), core, half
    # a thick slice averages the lesion over its thickness: sample it at k depths through each slice, so the
    # slices above and below show a faint lesion that the label (more than half the slice) leaves out, as in a
    # real thick-slice series
    k = int(min(7, np.ceil(sp[0])))
    alpha = np.zeros(shape, np.float64)
    for o in ((np.arange(k) + 0.5) / k - 0.5) * sp[0]:
        ps = p.copy()
        ps[0] = ps[0] + o
        rs = np.sqrt(sum(((q @ ps)[i] / semi[i]) ** 2 for i in range(3))).reshape(shape)
        alpha += 1 / (1 + np.exp(-(1 - rs * lumps) / width))
    return (alpha / k).astype(np.float32), core, half


def paste_lesions(img: np.ndarray, lab: np.ndarray, spacing, n: int, rng, inside: np.ndarray,
                  p_anywhere: float = 0.25, partial_volume: bool = False) -> int:
    """Paste up to ``n`` lesions into ``img`` (in place), label 1 in ``lab``; returns how many. Centres
    inside ``inside`` (the head), or anywhere with ``p_anywhere`` (on a flat dark background, or at the
    head's edge: a bright blob on dark, like a lung nodule, or one touching a wall)."""
    lo, hi = np.percentile(img, [1, 99])
    span = float(hi - lo)
    cand = np.argwhere(inside)
    placed = 0
    for _ in range(n * 4):
        if placed >= n:
            break
        d = float(np.exp(rng.uniform(np.log(5.0), np.log(40.0))))
        alpha, core, half = lesion_shape(spacing, rng, d, partial_volume)
        c = cand[rng.integers(len(cand))] if rng.random() >= p_anywhere else \
            np.array([rng.integers(s) for s in img.shape])
        box = tuple(slice(ci - h, ci + h + 1) for ci, h in zip(c, half))
        if any(b.start < 0 or b.stop > s for b, s in zip(box, img.shape)):
            # clip the lesion box to the volume (a lesion may be cut by the border, as in a crop)
            cut = tuple(slice(max(-b.start, 0), alpha.shape[i] - max(b.stop - img.shape[i], 0)) for i, b in enumerate(box))
            box = tuple(slice(max(b.start, 0), min(b.stop, s)) for b, s in zip(box, img.shape))
            alpha, core = alpha[cut], core[cut]
        obj = alpha > 0.5
        if obj.sum() < 20:
            continue
        if ndi.binary_dilation(lab[box] > 0, iterations=2)[obj].any():
            continue  # never touching another object: each object is its own component
        region = img[box]
        ring = (alpha > 0.02) & (alpha < 0.5)
        bg = float(np.median(region[ring])) if ring.any() else float(np.median(region))
        sign = 1.0 if rng.random() < 0.6 else -1.0
        level = bg + sign * rng.uniform(0.1, 0.8) * span
        tex = rng.uniform(0.0, 0.12) * span * smooth_noise(alpha.shape, rng, rng.uniform(0.7, 2.0))
        inner = np.full(alpha.shape, level, np.float32)
        if rng.random() < 0.25:  # a core of another intensity (necrosis / ring enhancement)
            inner[core] = bg + rng.uniform(-0.5, 0.5) * span
        region[...] = region * (1 - alpha) + (inner + tex) * alpha
        lab[box][obj] = 1
        placed += 1
    return placed


def background_structures(img: np.ndarray, head: np.ndarray, spacing, rng) -> None:
    """Outside the head (flat dark background): a faint texture and a network of thin bright tubes
    (where two smooth noise fields are both near zero), unlabelled, like lung parenchyma and vessels
    around a nodule; in place."""
    if rng.random() > 0.7:
        return
    lo, hi = np.percentile(img, [1, 99])
    span = float(hi - lo)
    out = ~head
    sigma = [max(0.7, rng.uniform(2.0, 5.0) / s) for s in spacing]
    n1, n2 = smooth_noise(img.shape, rng, sigma), smooth_noise(img.shape, rng, sigma)
    width = rng.uniform(0.06, 0.15)
    tubes = np.clip(1 - np.maximum(np.abs(n1), np.abs(n2)) / width, 0, 1)  # soft-edged tubes
    img[out] += (rng.uniform(0.02, 0.08) * span * n1 + rng.uniform(0.2, 0.9) * span * tubes)[out]


def finish(img: np.ndarray, rng) -> np.ndarray:
    """Scanner-like noise and a smooth bias field."""
    lo, hi = np.percentile(img, [1, 99])
    span = float(hi - lo)
    coarse = rng.standard_normal((4, 4, 4)).astype(np.float32)
    field = ndi.zoom(coarse, [s / 4 for s in img.shape], order=3, mode="nearest")[tuple(slice(0, s) for s in img.shape)]
    bias = 1 + rng.uniform(0.0, 0.25) * field / 3
    img = img * bias
    return (img + rng.uniform(0.005, 0.04) * span * rng.standard_normal(img.shape)).astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--p-anywhere", type=float, default=0.25,
                    help="share of lesions placed anywhere (often on the dark background among the tubes, like a lung "
                         "nodule) rather than inside the head")
    ap.add_argument("--partial-volume", action="store_true",
                    help="thick slices (> 1.5 mm) average each lesion over the slice thickness (faint, unlabelled "
                         "lesion in the slices above and below, as in a real thick-slice series)")
    ap.add_argument("--small", action="store_true", help="two small cases (a smoke test of this script)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    t1 = read_image(SHARED / "mni152" / "t1.nii.gz").data.astype(np.float32)
    variants = MNI_VARIANTS + [VAL_VARIANT]
    if args.small:
        t1 = t1[60:120, 60:160, 50:150]
        variants = [MNI_VARIANTS[0], VAL_VARIANT]
    records = []
    for name, spacing, axis, n in variants:
        r = np.random.default_rng([args.seed, len(records)])
        vol = resample_mni(t1, spacing, axis)
        if name == "val":  # a smaller volume: the validation robot runs every epoch
            box = tuple(slice(max((n - k) // 2, 0), max((n - k) // 2, 0) + k) for n, k in zip(vol.shape, VAL_SIZE))
            vol = np.ascontiguousarray(vol[box])
        head = ndi.binary_fill_holes(vol > np.percentile(vol, 60) * 0.3)
        lab = np.zeros(vol.shape, np.uint8)
        background_structures(vol, head, spacing, r)
        placed = paste_lesions(vol, lab, spacing, n if not args.small else 4, r, head, args.p_anywhere, args.partial_volume)
        vol = finish(vol, r)
        export_case(vol, lab, out, "tiff", spacing=spacing, case_id=name, label_names=["background", "object"],
                    source_name=f"mni152/t1.nii.gz resampled to {spacing} mm, thick axis {'zyx'[axis]}")
        records.append((name, vol.shape, placed))
        print(f"{name}: {vol.shape} {spacing} mm, {placed} lesions ({time.perf_counter() - t0:.0f} s)", flush=True)
    if not args.small:
        im = read_image(SHARED / "radiomics" / "brain1_image.nii.gz")
        tumour = read_image(SHARED / "radiomics" / "brain1_labels.nii.gz").data > 0
        r = np.random.default_rng([args.seed, 99])
        vol = im.data.astype(np.float32)
        lab = tumour.astype(np.uint8)
        head = ndi.binary_fill_holes(vol > np.percentile(vol, 60) * 0.3)
        placed = paste_lesions(vol, lab, im.spacing, 12, r, head, 0.25, args.partial_volume)
        vol = finish(vol, r)
        export_case(vol, lab, out, "tiff", spacing=tuple(im.spacing), case_id="brain1",
                    label_names=["background", "object"], source_name="radiomics/brain1 (real tumour + synthetic lesions)")
        records.append(("brain1", vol.shape, placed + 1))
        print(f"brain1: {vol.shape}, real tumour + {placed} lesions ({time.perf_counter() - t0:.0f} s)", flush=True)
    names = [r[0] for r in records]
    split = {"train": [n for n in names if n != "val"], "val": ["val"]}
    (out / "split.json").write_text(json.dumps(split, indent=1))
    (out / "README.txt").write_text(f"built by scripts/build_lesion_dataset.py --seed {args.seed} --p-anywhere {args.p_anywhere}{' --partial-volume' if args.partial_volume else ''}; held out: {HELD_OUT}\n"
                                    + "\n".join(f"{n} {s} {k} objects" for n, s, k in records) + "\n")
    print(f"done in {time.perf_counter() - t0:.0f} s: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
