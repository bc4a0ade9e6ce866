"""Two ways to click-segment a 3D lesion without a trained 3D click model, measured (issue 18, 2026-12-03).

Neither is shipped; the figures are in docs/prompts.md ("Without a 3D click model").

* ``slices``: the bundled 2D ``nuclei-2d-prompt`` on each tumour slice of a radiomics case (one click at
  the slice's distance-transform maximum: per-slice Dice), then *propagation*: from the deepest slice,
  each neighbour is segmented with a click at the deepest point of the previous slice's mask (that mask
  as ``previous``), stopping when the new mask overlaps the previous one by less than half, or its area
  changes more than 2.5x: 3D Dice of the propagated object.
* ``classical``: the Otsu component under the positive clicks on a crop (24 in-plane voxels of margin,
  Gaussian smoothing of 1 in-plane voxel), negative clicks splitting it by a marker watershed on the
  negated distance transform, corrections merged locally (:func:`~napari_attnseg.prompts.segment.merge_local`);
  the benchmark's robot clicker (``benchmarks/bench_prompts.py``), deepest first click: IoU per click.

    OMP_NUM_THREADS=2 python scripts/probe_3d_click_alternatives.py --case lung1 [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from bench_prompts import first_click, object_box, session_from  # noqa: E402

from napari_attnseg import load_model, segment_with_prompts  # noqa: E402
from napari_attnseg.data import read_image  # noqa: E402
from napari_attnseg.prompts.encode import draw_disks  # noqa: E402
from napari_attnseg.prompts.segment import _keep_clicked, merge_local  # noqa: E402


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


def deepest(mask: np.ndarray) -> tuple[int, ...]:
    d = ndi.distance_transform_edt(mask)
    return tuple(int(v) for v in np.unravel_index(d.argmax(), d.shape))


def slices_probe(image: np.ndarray, target: np.ndarray) -> None:
    model = load_model("nuclei-2d-prompt", device="cpu")
    zs = np.flatnonzero(target.any((1, 2)))
    per = {}
    for z in zs:
        r = segment_with_prompts(model, image[z], [deepest(target[z])], [1], attention=False)
        per[int(z)] = round(dice(r.mask, target[z]), 3)
    print("nuclei-2d-prompt, one click per tumour slice, Dice:", per)
    z0 = int(zs[np.argmax([target[z].sum() for z in zs])])
    out = np.zeros_like(target)
    out[z0] = segment_with_prompts(model, image[z0], [deepest(target[z0])], [1], attention=False).mask
    for step in (1, -1):
        prev, z = out[z0], z0 + step
        while 0 <= z < len(target) and prev.any():
            mask = segment_with_prompts(model, image[z], [deepest(prev)], [1], previous=prev, attention=False).mask
            ratio = mask.sum() / max(1, prev.sum())
            if not mask.any() or (mask & prev).sum() / max(1, prev.sum()) < 0.5 or not 0.2 <= ratio <= 2.5:
                break
            out[z], prev, z = mask, mask, z + step
    print(f"propagated from slice {z0}: slices {np.flatnonzero(out.any((1, 2))).tolist()}, 3D Dice "
          f"{dice(out, target):.3f} (reference slices {zs.tolist()})")


def classical(image: np.ndarray, spacing: tuple[float, ...]):
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    sp = np.asarray(spacing, float)
    margin = np.maximum(3, np.round(24 * sp.min() / sp)).astype(int)
    radius = np.maximum(1.5 * sp.min() / sp, 0.5)

    def seg(points, labs, previous):
        points, labs = np.asarray(points, float), np.asarray(labs)
        pos = points[labs == 1]
        lo = np.floor(pos.min(0)).astype(int) - margin
        hi = np.ceil(pos.max(0)).astype(int) + margin + 1
        if previous is not None and previous.any():
            idx = np.nonzero(previous)
            lo = np.minimum(lo, [i.min() - m for i, m in zip(idx, margin)])
            hi = np.maximum(hi, [i.max() + m + 1 for i, m in zip(idx, margin)])
        box = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(lo, hi, image.shape))
        start = np.array([s.start for s in box])
        crop = ndi.gaussian_filter(image[box].astype(np.float32), sp.min() / sp)
        t = threshold_otsu(crop)
        local = points - start
        ip = [tuple(np.clip(np.round(p).astype(int), 0, np.array(crop.shape) - 1)) for p in local]
        first = ip[int(np.flatnonzero(labs == 1)[0])]
        fg = crop > t if crop[first] > t else crop <= t
        cc, _ = ndi.label(fg)
        cand = np.isin(cc, list({int(cc[p]) for p, lab in zip(ip, labs) if lab == 1} - {0}))
        markers = np.zeros(crop.shape, np.int32)
        for p, lab in zip(local, labs):
            markers[draw_disks(crop.shape, p[None], radius) & cand] = 1 if lab == 1 else 2
        if (markers == 2).any():
            cand = watershed(-ndi.distance_transform_edt(cand, sampling=sp), markers, mask=cand) == 1
        cand = _keep_clicked(cand, local, labs)
        if len(points) > 1 and previous is not None and previous[box].any():
            cand = _keep_clicked(merge_local(previous[box], cand, local[-1], radius), local, labs)
        out = np.zeros(image.shape, bool)
        out[box] = cand
        return out

    return seg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="lung1", choices=("lung1", "brain1"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args(argv)
    folder = Path(args.shared) / "radiomics"
    im = read_image(folder / f"{args.case}_image.nii.gz")
    image = np.asarray(im.data).astype(np.float32)
    target = np.asarray(read_image(folder / f"{args.case}_labels.nii.gz").data) > 0
    slices_probe(image, target)
    box = object_box(target)
    first = first_click(target[box]) + np.array([s.start for s in box], float)
    ious, clicks = session_from(classical(image, tuple(float(s) for s in im.spacing)), target, first, max_clicks=5)
    print("classical (Otsu + watershed negatives), IoU after 0..5 clicks:", [round(v, 3) for v in ious],
          "clicks:", [(c.astype(int).tolist(), lab) for c, lab in clicks])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
