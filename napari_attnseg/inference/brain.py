"""Brain extraction for T1 MRI with skull and scalp, and a check that a brain prediction looks sane.

A model trained on skull-stripped brains (the bundled ``brain-mri-3d``) labels scalp fat as white
matter on a scan straight from the scanner. When a card asks for it (``"brain_extraction": "auto"``)
the engine runs :func:`extract_brain` first: the head is split into dark (air, skull, CSF) and tissue
(brain, scalp, muscle) by Otsu's threshold, and a voxel darker than the tissue on both sides of it (a
valley: the skull between scalp and brain, also where thick slices average it with its neighbours
into grey) is not tissue either; an erosion of a few millimetres cuts the thin bridges
between scalp and brain across the dark skull; the largest tissue component nearest the head's
centre is the brain; it is grown back inside the tissue (and the dark CSF it encloses) no further
than the erosion took away plus a margin, and its holes are filled. Everything outside is set to the
image minimum, as in the skull-stripped training data. When the air's noise is high (:func:`_denoised`) the mask is
found on a copy smoothed by a Gaussian of 1.5 mm; the model still sees the image as it came.

An input that is already skull-stripped is recognised first, from the image (:func:`.brain_checks.looks_stripped`:
a constant background around one connected region with no skull in it), and left alone: the thresholds above,
made for a head, cut half of a stripped T2 or contrast-enhanced T1 away. Otherwise, when less than
``STRIPPED_SHARE`` of the head would be removed, the input is taken as stripped and left alone too.

Pure numpy/scipy/scikit-image: no torch, no Qt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

VALLEY_MM = 4.0  # half-width of the closing that finds valleys: wider than the skull, narrower than the brain
VALLEY_DEPTH = 0.3  # a valley: darker than the closing by this share of it (above the image minimum)
STRIPPED_SHARE = 0.15  # an extraction that would remove less of the head than this: the input is stripped
OUTSIDE_WARN = 0.05  # predicted tissue outside the largest brain component above this share: warn
# ... unless the model learnt small objects (training foreground share below this: a brain model fine-tuned on a
# tumour), whose separate blobs are not tissue outside the brain (every run warned "84% ... strip the skull")
SMALL_OBJECTS = 0.05
NOISY_SHARE = 0.15  # noise sigma in the air above this share of the dark threshold (above the minimum): denoise
# the image the mask is found on (the 2 mm synthetic-skull MNI: 0.11 at 4 % Rician noise, 0.21 at 8 %; brain1 0.07)
DENOISE_MM = 1.5  # sigma of that Gaussian


@dataclass
class BrainMask:
    mask: np.ndarray  # bool, the image's shape: True inside the brain
    applied: bool  # False when the input looked skull-stripped already
    removed_share: float  # share of the head's voxels outside the brain mask
    note: str


def _ball(radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    r = [max(0, int(np.floor(radius_mm / s))) for s in spacing]
    grids = np.ogrid[tuple(slice(-k, k + 1) for k in r)]
    dist = sum((g * s / radius_mm) ** 2 for g, s in zip(grids, spacing))
    return dist <= 1.0


def _thresholds(values: np.ndarray) -> tuple[float, float]:
    """Three intensity classes of the head: dark (air, skull, CSF) / mid (grey matter, skin, muscle) /
    bright (white matter, fat). Returns the two thresholds."""
    from skimage.filters import threshold_multiotsu

    if values.size < 3 or values.min() == values.max():
        v = float(values.min(initial=0))
        return v, v
    sample = values[:: max(1, values.size // 500_000)]
    try:
        lo, hi = threshold_multiotsu(sample, classes=3)
    except ValueError:  # two intensity levels (a phantom, a mask opened as an image): skimage cannot make three
        levels = np.unique(sample)
        if levels.size < 3:
            mid = float(levels[0] + levels[-1]) / 2
            return mid, mid
        lo, hi = np.percentile(sample, [33.3, 66.7])
    return float(lo), float(hi)


def _fill_holes(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """``ndi.binary_fill_holes(mask, structure)``, the same voxels, from one labelling of the background: its
    components (connected through ``structure``) that touch no face of the array are holes. With an
    in-plane structure this fills every slice's holes at once (~10x faster than slice by slice)."""
    background, n = ndi.label(~mask, structure=structure)
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, bool)
    for axis in range(mask.ndim):
        if structure.shape[axis] == 1 or not structure.any(axis=tuple(a for a in range(mask.ndim) if a != axis)).all():
            continue  # not connected along this axis: its first and last planes are no border
        for end in (0, -1):
            outside[np.take(background, end, axis=axis)] = True
    outside[0] = False  # label 0 is the mask itself: kept
    return ~outside[background]


def _depth(head: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """``ndi.distance_transform_edt(head, sampling=spacing)``, the same values, computed on the head's bounding
    box and one voxel around it: the background nearest to a head voxel is never further out (the box's outer
    layer is background wherever the volume goes on), and outside the box every voxel is background, 0. An MRI
    field of view is mostly air around the head (MNI152: the box is 47 % of the volume)."""
    depth = np.zeros(head.shape)
    found = ndi.find_objects(head.astype(np.uint8))
    if not found:
        return depth
    box = tuple(slice(max(0, s.start - 1), min(n, s.stop + 1)) for s, n in zip(found[0], head.shape))
    depth[box] = ndi.distance_transform_edt(head[box], sampling=spacing)
    return depth


def _valleys(a: np.ndarray, lo: float, spacing: Sequence[float]) -> np.ndarray:
    """Voxels darker by ``VALLEY_DEPTH`` than the grey closing over a box of +-``VALLEY_MM``: dark layers
    between brighter ones, such as the skull between scalp and brain. On thick slices the skull at the
    top of the head is cut obliquely and averaged with scalp and brain into a grey that a global
    threshold calls tissue; it is still darker than both its sides. The box keeps to the slice when the
    slices are thicker than ``VALLEY_MM``; then a voxel darker than the slices above and below it is a
    valley too."""
    size = [2 * int(VALLEY_MM / s) + 1 for s in spacing]
    closed = ndi.grey_closing(a, size=size)
    if size[0] == 1:  # and across the slices: over the vertex the skull lies in a slice between scalp and brain
        closed = np.maximum(closed, ndi.grey_closing(a, size=(3, 1, 1)))
    return (closed - a) > VALLEY_DEPTH * np.maximum(closed - lo, 1e-6)


def _closing(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """``ndi.binary_closing`` with the volume's faces continued outwards (edge padding), not eroded from: a field
    of view that cuts through the brain (a slab, the top of the head cut off) kept losing the brain in its first
    and last slices (a 32-slice stripped MNI slab: 4 slices gone, 18 % of the head, so extraction was applied)."""
    pad = [(k // 2, k // 2) for k in structure.shape]
    closed = ndi.binary_closing(np.pad(mask, pad, mode="edge"), structure=structure)
    return closed[tuple(slice(a, a + n) for (a, _), n in zip(pad, mask.shape))]


def _large_parts(mask: np.ndarray, share: float = 0.05) -> np.ndarray:
    """The components of ``mask`` with at least ``share`` of the largest one's voxels (the head, not noise)."""
    labels, n = ndi.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return (sizes >= share * sizes.max())[labels]


def _brain_core(tissue: np.ndarray, depth: np.ndarray, spacing: Sequence[float], erode_mm: float) -> np.ndarray:
    """The eroded tissue's large, deep components: brain, not scalp remnants (which lie in the head's
    outer shell)."""
    core = ndi.binary_erosion(tissue, structure=_ball(erode_mm, spacing))
    labels, n = ndi.label(core)
    if n == 0:
        return core
    index = np.arange(1, n + 1)
    sizes = ndi.sum(core, labels, index=index)
    deepest = np.zeros(n + 1)  # ndi.maximum(depth, labels, index), without its sort of every voxel (1 s on 160^3)
    np.maximum.at(deepest, labels[core], depth[core])
    deepest = deepest[1:]
    keep = (sizes >= 0.05 * sizes.max()) & (deepest >= 0.5 * deepest.max())
    return np.isin(labels, index[keep])


def _denoised(a: np.ndarray, lo: float, dark_thr: float, spacing: Sequence[float]) -> tuple[np.ndarray, float, float]:
    """``(a, lo, dark_thr)`` as given, or for a head whose air's noise (:func:`.brain_checks.noise_floor`) is above
    ``NOISY_SHARE`` of the dark threshold's height above the minimum, ``a`` smoothed by a Gaussian of
    ``DENOISE_MM`` (in the plane only on thick slices) with its minimum and dark threshold again. Noise speckles the
    tissue with voxels under the threshold and takes them for valleys; the erosion then breaks the brain into
    crumbs (synthetic-skull MNI at 12 % Rician noise: 90 % of the head removed, grey matter Dice 0.085). The mask
    only: the model still sees the image as it came."""
    from .brain_checks import noise_floor

    sigma = noise_floor(a, lo)
    if sigma <= NOISY_SHARE * (dark_thr - lo):
        return a, lo, dark_thr
    finest = min(spacing)
    smooth = ndi.gaussian_filter(a, [0.0 if s > 2.0 * finest else DENOISE_MM / s for s in spacing])
    low = float(smooth.min())
    return smooth, low, _thresholds(smooth[smooth > low])[0]


def extract_brain(image: np.ndarray, spacing: Sequence[float] | None = None, *, erode_mm: float = 4.0,
                  grow_mm: float = 12.0) -> BrainMask:
    """The brain mask of a T1 volume (z, y, x) with ``spacing`` in mm (default 1 mm).

    The head is split into dark / grey / bright by a three-class Otsu threshold; the tissue (grey and
    bright, less the valleys: see :func:`_valleys`) is eroded by ``erode_mm`` to cut the bridges between scalp and brain across the dark
    skull; the large components that stay are brain unless they lie in the outer shell of the head
    (scalp remnants); the brain core is grown back through tissue only (a geodesic dilation of up to
    ``grow_mm``, so it never jumps the skull) and the CSF it encloses is filled in.
    """
    a = np.asarray(image, np.float32)
    if a.ndim != 3:
        raise ValueError(f"Brain extraction needs a 3D volume; got shape {a.shape}.")
    spacing = tuple(float(s) for s in (spacing or (1.0, 1.0, 1.0)))
    finite = np.isfinite(a)
    lo = float(a[finite].min()) if finite.any() else 0.0
    above = finite & (a > lo)
    if not above.any():
        return BrainMask(np.zeros(a.shape, bool), False, 0.0, "the image is empty or flat; no brain extraction")
    from .brain_checks import looks_stripped

    stripped = looks_stripped(a, spacing)
    if stripped is not None:  # (the rule below, on what would be removed, cut a stripped T2 or enhanced T1 by half)
        return BrainMask(stripped[0], False, 0.0, stripped[1])
    dark_thr, _ = _thresholds(a[above])
    if finite.all():
        a, lo, dark_thr = _denoised(a, lo, dark_thr, spacing)
        above = a > lo
    # the head: everything brighter than half the dark class's upper bound (air is darker), holes filled, without
    # the specks of noise in the air (8 % Rician noise on a stripped brain: 15 % more "head", extraction applied)
    head = _large_parts(ndi.binary_fill_holes(above & (a > 0.5 * (lo + dark_thr))))
    tissue = head & (a > dark_thr) & ~_valleys(a, lo, spacing)
    depth = _depth(head, spacing)  # below the head's surface, in mm
    thick = spacing[0] > 2.0 * max(spacing[1:])
    # thick slices: erode at least one slice deep, so the scalp over the vertex (cut tangentially, where
    # the thin skull disappears in the partial volume) comes apart from the brain below it
    radius = max(erode_mm, spacing[0]) if thick else erode_mm
    brain = _brain_core(tissue, depth, spacing, radius)
    if not brain.any():
        return BrainMask(head, False, 0.0, "the tissue is too thin to find a brain in; no brain extraction")
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndi.generate_binary_structure(2, 1)
    across = np.zeros((3, 3, 3), bool)
    across[:, 1, 1] = True
    steps = max(1, int(round((radius + 2.0) / min(spacing[1:])))) if thick else max(1, int(round(grow_mm / min(spacing))))
    if thick:  # the core one slice across, then grown back in the plane: never further than eroded. Not in
        # the other order: towards the top of the head the brain's outline shrinks from slice to slice, and
        # a grown outline carried to the next slice up lies in its skull and scalp
        grown = ndi.binary_dilation(brain, structure=across, iterations=1, mask=tissue)
        grown = ndi.binary_dilation(grown, structure=in_plane, iterations=steps, mask=tissue)
    else:
        grown = ndi.binary_dilation(brain, structure=ndi.generate_binary_structure(3, 1), iterations=steps, mask=tissue)
    mask = _fill_holes(grown, in_plane)  # ventricles and sulci enclosed in the slice belong to the brain
    mask = _closing(_fill_holes(mask, ndi.generate_binary_structure(3, 1)), _ball(2.0, spacing)) & head
    removed = float(1.0 - mask.sum() / max(head.sum(), 1))
    if removed < STRIPPED_SHARE:
        return BrainMask(mask, False, removed, f"the input looks skull-stripped ({removed:.0%} of the head would be "
                                               "removed); brain extraction not applied")
    return BrainMask(mask, True, removed, f"brain extraction removed {removed:.0%} of the head (skull, scalp)")


def apply_brain_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with everything outside ``mask`` set to its minimum (as in skull-stripped data)."""
    a = np.asarray(image)
    out = a.copy()
    out[~mask] = np.nanmin(a) if a.dtype.kind == "f" else a.min()
    return out


def tissue_outside_brain(labels: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Share of the predicted tissue (labels > 0) outside the largest connected component of it,
    after an opening of 2 mm that breaks thin bridges. A brain prediction is one piece; scalp or neck
    labelled as tissue is not."""
    fg = np.asarray(labels) > 0
    total = int(fg.sum())
    if total == 0:
        return 0.0
    # the same share within the tissue's bounding box (nothing outside it is tissue; the opening stays
    # inside the tissue and only the tissue is measured): the morphology runs on less than the volume
    fg = fg[ndi.find_objects(fg.astype(np.uint8))[0]]
    spacing = tuple(float(s) for s in (spacing or (1.0,) * fg.ndim))
    opened = ndi.binary_opening(fg, structure=_ball(2.0, spacing)) if fg.ndim == 3 else fg
    lab, n = ndi.label(opened)
    if n == 0:
        return 1.0
    sizes = ndi.sum(opened, lab, index=np.arange(1, n + 1))
    main = ndi.binary_dilation(lab == (int(np.argmax(sizes)) + 1), structure=_ball(2.0, spacing)) if fg.ndim == 3 \
        else lab == (int(np.argmax(sizes)) + 1)
    return float((fg & ~main).sum() / total)


SHARE_FACTOR = 4.0  # a class predicted at under 1/4 (or over 4x) of its share in the training labels: warn


def unlike_training_shares(labels: np.ndarray, classes: Sequence[str], shares: dict[str, float] | None,
                           factor: float = SHARE_FACTOR) -> str | None:
    """A warning when the predicted classes are far from their shares of the training labels' foreground
    (the card's ``metrics["class_shares"]``), e.g. a brain scan of another contrast called almost all grey
    matter; None when they are close, or when the card has no shares."""
    if not shares:
        return None
    lab = np.asarray(labels)
    total = int((lab > 0).sum())
    if total == 0:
        return None
    odd = []
    for i, name in enumerate(classes):
        want = shares.get(name)
        if i == 0 or not want:
            continue
        got = float((lab == i).sum()) / total
        if got < want / factor or got > min(1.0, want * factor):
            odd.append(f"{name} {got:.0%} (training {want:.0%})")
    if not odd:
        return None
    return (f"The predicted classes are unlike the training data's: {', '.join(odd)} of the predicted tissue. The "
            "input's contrast looks unlike what the model learnt (another sequence, contrast agent, scanner?): check the "
            "mask, or fine-tune on a few corrected slices.")


def _class_index(classes: Sequence[str], name: str) -> int | None:
    names = [str(c).strip().lower() for c in classes]
    return names.index(name) if name in names else None


def reversed_anatomy(labels: np.ndarray, brain: np.ndarray, classes: Sequence[str],
                     spacing: Sequence[float] | None = None) -> str | None:
    """A warning when the predicted white matter lies nearer the brain's surface than the grey matter (median
    depth inside ``brain``, the extraction's brain mask): in every brain the white matter is inside the cortex,
    whatever the contrast, so a reversed order means the model took another contrast's bright tissue for white
    matter (a FLAIR or T2: grey matter or CSF brighter than white matter). Measured: every T1 variant of the MNI
    template (thick slices, 0.8 mm, noise, bias field, tilted, cut, smaller) 1.9-2.4; a FLAIR-like 0.53, a
    T2-like brain1 0.72. None for models without both classes (by name) or too little of either."""
    gm, wm = _class_index(classes, "grey matter"), _class_index(classes, "white matter")
    lab, inside = np.asarray(labels), np.asarray(brain, bool)
    if gm is None or wm is None or lab.ndim != 3 or inside.shape != lab.shape or not inside.any():
        return None
    spacing = tuple(float(s) for s in (spacing or (1.0,) * 3))
    thin = min(spacing)  # a coarser copy (about 2 mm; thick slices kept) is plenty for two medians
    step = tuple(max(1, int(round(2.0 / s))) if s <= 2.0 * thin else 1 for s in spacing)
    sub = tuple(slice(None, None, k) for k in step)
    lab, inside = lab[sub], inside[sub]
    g, w = (lab == gm) & inside, (lab == wm) & inside
    if min(int(g.sum()), int(w.sum())) < max(100, 0.02 * int((g | w).sum())):
        return None
    depth = _depth(inside, [s * k for s, k in zip(spacing, step)])
    d_gm, d_wm = float(np.median(depth[g])), float(np.median(depth[w]))
    if d_wm >= d_gm:
        return None
    return (f"The predicted white matter lies nearer the brain's surface than the grey matter (median depth "
            f"{d_wm:.0f} mm vs {d_gm:.0f} mm; in a brain it is inside the cortex): the input's contrast looks unlike "
            "the T1 the model learnt (a FLAIR or T2, where grey matter or CSF is brighter than white matter?). "
            "This mask is not usable as it is: use a model for this sequence, or fine-tune on a few corrected slices.")


WORK_VOXELS = 4_000_000  # brain extraction runs on at most about this many voxels (a 1 mm head has ~10 M)


def extract_brain_fast(image: np.ndarray, spacing: Sequence[float] | None) -> BrainMask:
    """:func:`extract_brain` on a copy resampled to at most ``WORK_VOXELS`` voxels (the slice axis of
    thick-slice data kept), the mask brought back to the image's grid."""
    spacing = tuple(float(s) for s in (spacing or (1.0,) * np.ndim(image)))
    n = int(np.prod(np.shape(image)))
    if n <= WORK_VOXELS:
        return extract_brain(image, spacing)
    thick = spacing[0] > 2.0 * max(spacing[1:])
    f = (WORK_VOXELS / n) ** (0.5 if thick else 1.0 / 3.0)
    factors = [1.0 if (thick and i == 0) else f for i in range(3)]
    small = ndi.zoom(np.asarray(image, np.float32), factors, order=1, prefilter=False)
    actual = [m / n_ for m, n_ in zip(small.shape, np.shape(image))]
    coarse = extract_brain(small, [s / a for s, a in zip(spacing, actual)])
    mask = ndi.zoom(coarse.mask.astype(np.uint8), [1 / a for a in actual], order=0, prefilter=False, grid_mode=True,
                    mode="nearest") > 0
    fixed = np.zeros(np.shape(image), bool)  # zoom can be off by a voxel at the far edge
    box = tuple(slice(0, min(a, b)) for a, b in zip(fixed.shape, mask.shape))
    fixed[box] = mask[box]
    return BrainMask(fixed, coarse.applied, coarse.removed_share, coarse.note)


def with_brain_extraction(run, model, image, options: dict):
    """Run the engine (``run(model, image, options)``, a generator) on the brain only when the input
    has skull and scalp; labels outside the brain are background. Says what it did in the warnings
    and ``params["brain_extraction"]``, and warns when the prediction has tissue outside one brain."""
    spacing = options.get("spacing")
    found = extract_brain_fast(np.asarray(image), spacing)
    source = apply_brain_mask(image, found.mask) if found.applied else image
    pred = yield from run(model, source, options)
    if found.applied:
        labels = pred.labels
        labels[~found.mask] = 0  # in place: also when the labels are a memory-mapped output
    outside = tissue_outside_brain(np.asarray(pred.labels), spacing)
    pred.params["brain_extraction"] = {"applied": found.applied, "removed_share": round(found.removed_share, 4),
                                       "tissue_outside_brain": round(outside, 4)}
    if found.applied:
        pred.warnings.append(f"{found.note[0].upper()}{found.note[1:]}; the model saw the brain only.")
    balance = unlike_training_shares(pred.labels, list(model.card.classes),
                                     (getattr(model.card, "metrics", None) or {}).get("class_shares"))
    if balance:
        pred.warnings.append(balance)
    else:  # (the shares said it already: one warning about the contrast is enough)
        anatomy = reversed_anatomy(pred.labels, found.mask, list(model.card.classes), spacing)
        if anatomy:
            pred.warnings.append(anatomy)
        elif found.mask.any() and None not in (_class_index(model.card.classes, "grey matter"),
                                                _class_index(model.card.classes, "white matter")):
            # (a T1 by its anatomy: its brightest tissue is the white matter)
            from .brain_checks import strong_bias_field

            shading = strong_bias_field(image, found.mask, spacing or (1.0,) * 3)
            if shading:
                pred.warnings.append(shading)
    trained_share = (getattr(model.card, "metrics", None) or {}).get("foreground_share")
    lesions = trained_share is not None and trained_share < SMALL_OBJECTS  # (a tumour model: blobs, not the brain)
    if outside > OUTSIDE_WARN and not lesions:
        pred.warnings.append(f"{outside:.0%} of the predicted tissue lies outside the largest connected brain "
                             "component: the input looks unlike the skull-stripped training data (skull, neck, "
                             "another contrast?). Check the mask, or strip the skull first.")
    return pred
