"""Whether an image looks like a model's training data (split from :mod:`.checks`, which re-exports these): a CT in
Hounsfield units against a model not trained on CT and the reverse, an inverted contrast, an MRI background that is
not 0. The advice depends on what is being done: segmenting an image (invert it first) or fine-tuning on it (the
trainer's own segmentations, inside :func:`fine_tuning_advice`), where inverted data is fine as it is."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

_FINE_TUNING: ContextVar[bool] = ContextVar("attnseg_fine_tuning_advice", default=False)


@contextmanager
def fine_tuning_advice() -> Iterator[None]:
    """Within the block (this thread or task), the fit warnings advise for training on the image, not segmenting it:
    a training run segments its own (normalised) data again and again, where "invert the image first" is wrong."""
    token = _FINE_TUNING.set(True)
    try:
        yield
    finally:
        _FINE_TUNING.reset(token)


CT_UNLIKE = "looks like a CT in Hounsfield units, but"  # in domain_warning's text: the image is unlike the model's


def domain_warning(card, image: np.ndarray, has_channels: bool, normalization: dict | None = None) -> str | None:
    """A warning when the image and the model come from different worlds: a CT in Hounsfield units given to
    a model not trained on CT (its normalisation is not a CT window), or an image that is not in Hounsfield
    units given to one that was. None when they agree, or for multi-channel images."""
    from ..display import is_hounsfield

    if has_channels or card is None:
        return None
    spec = normalization or getattr(card, "normalization", None) or {}
    ct_model = spec.get("scheme") == "ct"
    ct_image = is_hounsfield(image)
    name = getattr(card, "name", "") or "the model"
    if ct_image and not ct_model:
        return (f"The image {CT_UNLIKE} {name} was not trained on CT (its normalisation is "
                f"{spec.get('scheme', 'unknown')!r}, not a CT window): check the result closely, or fine-tune the model "
                "on a few corrected slices of this kind of scan.")
    if ct_model and not ct_image:
        return (f"{name} was trained on CT in Hounsfield units (window {spec.get('window')}), but this image is not in "
                "Hounsfield units (no air near -1000): check the result closely, or use a model for this modality.")
    if spec.get("nonzero") and not ct_image:
        return _background_warning(image, name)
    trained = (getattr(card, "metrics", None) or {}).get("median_position")
    if trained is not None and not ct_image:
        here = median_position(image)
        if here is not None and here > 0.6 and here - float(trained) > 0.4:
            head = (f"Most of this image is bright (its median lies {here:.0%} of the way from the 1st to the 99th "
                    f"percentile; {name}'s training images: {float(trained):.0%}): {name} learnt bright objects on a "
                    "dark background.")
            if _FINE_TUNING.get():  # the trainer segmenting its own data: inverting it is no remedy there
                return (f"{head} Fine-tuning on such images as they are is fine: the model learns their contrast, "
                        "starting from a low validation Dice, so give it more time and reviewed slices than images "
                        "like its own would need. What matters is that the images you segment with the result "
                        "have this same contrast (invert all of them, for training and use, or none).")
            return (f"{head} If the objects here are dark on a bright background (bright-field, an inverted "
                    "image), invert the image first (Fiji: Edit > Invert; in Python: image.max() - image); check the result closely.")
    return None


def median_position(image) -> float | None:
    """Where the median lies between the 1st and 99th percentiles (0: at the dark end), on a subsample;
    about 0.15 for fluorescence nuclei on a dark background, about 0.85 for the same image inverted."""
    from .normalize import _sample, finite_values, percentiles

    s = finite_values(_sample(np.asarray(image) if not hasattr(image, "shape") else image, False, native=True))
    if s.size == 0:
        return None
    lo, med, hi = percentiles(s, [1, 50, 99])
    return None if hi <= lo else float((med - lo) / (hi - lo))


def _background_warning(image: np.ndarray, name: str) -> str | None:
    """A model normalised over the non-zero voxels (an MRI model: 0 outside the head) given an image whose
    background is not its minimum (a constant offset, all voxels + 100, the normalisation takes off: brain-mri-3d's
    GM Dice 0.94 -> 0.75 before it did) or intensities standardised inside the brain (negative values: 0.03),
    which the model never saw."""
    from .normalize import _sample, background_level, finite_values, percentiles

    sample = _sample(np.asarray(image), False, native=True)  # the subsample the normalisation statistics use
    finite = finite_values(sample)
    if finite.size == 0:
        return None
    top = float(percentiles(finite, [99])[0])
    negative = float((finite < 0).mean())
    # the in-plane edges of every slice (outside the head in nearly every MRI field of view; the first and last
    # slices of a slab can cut through the brain)
    faces = np.concatenate([np.take(sample, i, axis=a).ravel() for a in range(max(0, sample.ndim - 2), sample.ndim)
                            for i in (0, -1)])
    faces = finite_values(faces)
    low, border, high = (float(v) for v in percentiles(faces, [25, 50, 75])) if faces.size else (0.0, 0.0, 0.0)
    if negative > 0.05:
        return (f"{negative:.0%} of the image's voxels are negative, but {name} expects intensities >= 0 with 0 outside "
                "the body (as scanners write MRI): an image standardised (z-scored) or shifted by a tool cannot be "
                "segmented reliably; use the scanner's intensities.")
    # an offset is an even background at the dark end of the image (all voxels + 100: its quartiles 2% apart, 0% of
    # the voxels darker); a crop inside the head has tissue at its border: uneven (brain1 around its tumour: quartiles
    # 1.31 x the median apart) or brighter than much of the image (white matter around the MNI ventricles)
    even, dark = high - low <= 0.5 * border, float((finite < low).mean()) <= 0.35
    base = background_level(finite)  # (the offset the normalisation takes off: the same rule, so warned when it does not)
    border, top = border - base, top - base
    if top > 0 and border > 0.05 * top and even and dark:
        return (f"The image's border (its background) is at {border:.4g}, {border / top:.0%} of its bright end, but "
                f"{name} expects 0 outside the body (as scanners write MRI): an intensity offset lowers the accuracy; "
                "remove it (subtract the background value) and run again.")
    return None
