"""How the bundled models are scored on the bundled samples (one definition for the cards, the
tests and the README).

- ``nuclei-2d``: the right half (x >= 256) of the nuclei sample, never seen in training, and the
  whole image (what ``attnseg demo`` shows).
- ``brain-mri-3d``: the 1 mm MNI152 sample as a user opens it (the engine resamples to the model's
  2 mm and back); Dice per class on the test slab, axial slices k 56-87 at 1 mm (= k 28-43 at 2 mm).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ._paths import samples_dir
from .data import read_image
from .data.label_values import class_key
from .errors import InputError
from .inference import predict
from .training.losses import dice_per_class

BRAIN_TEST_SLAB_1MM = slice(56, 88)


def nuclei_sample_dice(model, precision: str = "fp32") -> dict[str, float]:
    image = read_image(samples_dir() / "nuclei2d_image.tif").data
    ref = (read_image(samples_dir() / "nuclei2d_labels.tif").data > 0).astype(np.uint8)
    labels = np.asarray(predict(model, image, precision=precision, return_probabilities=False).labels)
    return {
        "right_half": dice_per_class(labels[:, 256:], ref[:, 256:], 2)[0],
        "whole_image": dice_per_class(labels, ref, 2)[0],
    }


def brain_sample_dice(model, precision: str = "fp32") -> dict[str, list[float]]:
    t1 = read_image(samples_dir() / "mni152_t1.nii.gz")
    ref = read_image(samples_dir() / "mni152_labels.nii.gz").data
    labels = np.asarray(predict(model, t1.data, spacing=t1.spacing, precision=precision,
                                return_probabilities=False).labels)
    s = BRAIN_TEST_SLAB_1MM
    return {"test_slab_1mm": dice_per_class(labels[s], ref[s], 3)}


def label_mismatch(values: Iterable[int], classes: Sequence[str]) -> str:
    """A note when the label values of a reference do not match a model's classes ('' when they may):
    values the model never predicts, or one foreground value against a model of several classes
    (binary tumour labels scored as a brain model's "grey matter"). ``values``: the reference's label values, or
    the reference label array itself."""
    if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
        raise InputError(f"classes must be a list of class names, background first (model.card.classes); got {classes!r}.")
    unique = np.unique(np.asarray(values if not isinstance(values, (set, frozenset)) else list(values)))
    if not (np.issubdtype(unique.dtype, np.number) or unique.dtype == np.bool_) or np.any(unique != np.round(unique)):
        return (f"the reference holds values that are not class ids ({unique[:5].tolist()}...): is it a probability "
                "map or an image? Give a label array of whole numbers, 0 = background")
    found = sorted({int(v) for v in unique} - {0})
    extra = [v for v in found if not 0 < v < len(classes)]
    predicts = ", ".join(f"{i} {name}" for i, name in enumerate(classes))
    if extra and len(classes) == 2 and len(found) > 2:
        return (f"the reference has {len(found)} foreground values ({_few(found)}) but the model predicts one class "
                f"({predicts}): are they object ids (instance labels)? Score them as one class: reference > 0")
    if extra:
        return (f"the reference has label values {_few(extra)} that the model does not predict (it predicts {predicts}); "
                "those voxels count as misses: is the reference labelling what this model segments?")
    if len(found) == 1 and len(classes) > 2:
        return (f"the reference has one foreground value ({found[0]}) but the model predicts {len(classes) - 1} "
                f"classes ({', '.join(classes[1:])}): label {found[0]} is scored as '{classes[found[0]]}'; if the "
                "reference labels something else, these scores mean nothing")
    return ""


def names_to_classes(names: Sequence[str] | None, classes: Sequence[str]) -> tuple[dict[int, int], str]:
    """How the values of a reference whose classes are named (``names``: the names saved with the mask, or its
    dataset's label table, background first) map onto a model's ``classes`` by name (case and spaces aside), and a
    note; ``({}, '')`` when they are scored by value as they stand (no names, the same order, or names the model
    does not have). A reference naming the model's classes in another order (1 white matter, 2 grey matter against
    a model's 1 grey matter, 2 white matter) is scored by name: by value every class would score against another."""
    if not names or len(names) < 2:
        return {}, ""
    key = {class_key(c): i for i, c in enumerate(classes) if i}  # (0 is background, by value)
    found = {v: key.get(class_key(n)) for v, n in enumerate(names) if v}
    moved = {v: c for v, c in found.items() if c is not None and c != v}
    if not moved:
        return {}, ""
    listed = ", ".join(f"{v} {names[v]!r}" for v in moved)
    if any(c is None for c in found.values()) or len(set(found.values())) != len(found):
        return {}, (f"the reference names value(s) {listed} as classes the model predicts under other values "
                    f"({', '.join(f'{i} {c}' for i, c in enumerate(classes))}), and has names the model lacks: scored "
                    "by value; relabel the reference to the model's values to score by class")
    return {v: c for v, c in found.items() if c is not None}, (
        f"the reference names its classes in another order than the model ({listed}): scored by name, value "
        + ", ".join(f"{v} as {c} {classes[c]!r}" for v, c in moved.items()))


def unreviewed_slices(meta: dict, shape: tuple[int, ...], what: str) -> tuple[np.ndarray | None, str]:
    """The voxels of reference labels on slices nobody reviewed, when the labels mark which were (``meta``'s
    ``reviewed_slices``: saved with a mask by napari's Correct panel, a DICOM SEG's marks), and the note saying what is
    scored; ``(None, '')`` when they mark none (or every slice). The other slices hold what the model found there,
    unchecked: scored, they raised the Dice toward the model's own (0.1023 on the reviewed slices, 0.7603 over all).
    Refused when the marks name no slice of the labels (nothing checked to score)."""
    from .correct import format_slice_ranges

    if meta.get("reviewed_slices_dropped"):
        return None, (f"{what} carries reviewed-slice marks numbered in its own orientation, not the image's: they are "
                      "not used, so every slice is scored, unchecked ones too")
    marks = meta.get("reviewed_slices")
    if marks is None or len(shape) != 3:
        return None, ""
    rows = sorted({int(z) for z in marks if 0 <= int(z) < shape[0]})
    if not rows:
        raise InputError(f"{what} marks none of its {shape[0]} slices reviewed ({list(marks)}): there is no checked "
                         "slice to score against. Mark the slices you checked (napari: press R on each, then save the "
                         "mask) and evaluate again.")
    if len(rows) == shape[0]:
        return None, ""
    out = np.ones(shape, bool)
    out[rows] = False
    return out, (f"scored on the {len(rows)} reviewed slice{'s' if len(rows) > 1 else ''} "
                 f"({format_slice_ranges(rows)}) {what} marks; the other {shape[0] - len(rows)} are unchecked "
                 "(the model's own guess, or unlabelled) and left out")


def scored_slices(unchecked: np.ndarray | None) -> list[int] | None:
    """The slices (first axis) scored when :func:`unreviewed_slices` left the others out (``unchecked``: its voxel
    mask), as ``attnseg evaluate --json`` gives them (``reviewed_slices``); None: every slice is scored."""
    if unchecked is None:
        return None
    flat = np.asarray(unchecked, bool).reshape(len(unchecked), -1)
    return [int(k) for k in np.flatnonzero(~flat.all(axis=1))]


def reviewed_in_region(scored: list[int] | None, rows: slice, n_slices: int, region: str,
                       what: str) -> tuple[list[int] | None, str]:
    """The reviewed slices ``scored`` (:func:`scored_slices`) that ``--region`` keeps (its first-axis ``rows``), and
    a note when it keeps only some: ``(slices, note)``. Refused when it keeps none: the region holds only unchecked
    slices, which a Dice would score as "no voxel in the reference" although the labels may hold some there."""
    from .correct import format_slice_ranges

    if scored is None:
        return None, ""
    inside = [k for k in scored if k in range(*rows.indices(n_slices))]
    if not inside:
        raise InputError(f"--region {region} holds none of the slices {what} marks reviewed "
                         f"({format_slice_ranges(scored)}): nothing checked to score there. Give a region that "
                         "includes reviewed slices, or no --region.")
    if len(inside) == len(scored):
        return inside, ""
    return inside, (f"--region keeps {len(inside)} of them ({format_slice_ranges(inside)}): the Dice is theirs")


def probability_map_note(labels: np.ndarray, what: str) -> str:
    """A message when reference labels of whole numbers look like a probability map (a grey-matter map of 0-255, as
    uint8), '' otherwise: 16 values or more that differ between most neighbouring foreground voxels. Class maps and
    instance ids are constant over each object (neighbours differ: nuclei 0.3 %, the MNI grey/white-matter labels
    6 %; the MNI grey-matter probability map 95 %). Such a map was scored: Dice 0.00 / 0.07 with a note on 252 values."""
    labels = np.asarray(labels)
    values = np.unique(labels)
    if values.size < 16:
        return ""
    pairs = differ = 0
    for axis in range(labels.ndim):
        lo = labels[(slice(None),) * axis + (slice(None, -1),)]
        hi = labels[(slice(None),) * axis + (slice(1, None),)]
        both = (lo != 0) & (hi != 0)
        pairs += int(np.count_nonzero(both))
        differ += int(np.count_nonzero(both & (lo != hi)))
    if not pairs or differ < 0.5 * pairs:
        return ""
    return (f"{what} looks like a probability map, not labels: {values.size} values from {values[0]} to {values[-1]} "
            f"that change from voxel to voxel ({100 * differ // pairs}% of neighbouring voxels differ; in class or "
            "instance labels, a few %). Threshold it into class ids (e.g. a 0-255 map: > 127; grey/white-matter "
            "maps: 1 where grey matter wins, 2 where white matter does) and give that label file.")


TRANSPOSED_FIX = "in Python: np.swapaxes(labels, -1, -2), then save that"


def transposed_note(pred: np.ndarray, target: np.ndarray, n_classes: int, what: str,
                    ignore_index: int | None = None) -> str:
    """A note when the reference ``target`` fits the prediction far better with its last two (in-plane) axes swapped
    ('' otherwise): labels saved transposed ((x, y) against (y, x), e.g. by a tool that writes arrays column first,
    or after a ``.T``) keep their shape when the plane is square and were scored silently (the nuclei sample: Dice
    0.95 -> 0.21). Far better: a mean foreground Dice of 0.5 or more transposed, and at least twice and 0.25 above
    the Dice as given, so a poor prediction (both low) or a symmetric object (both alike) is not flagged."""
    pred, target = np.asarray(pred), np.asarray(target)
    if target.ndim < 2 or target.shape[-1] != target.shape[-2] or pred.shape != target.shape:
        return ""
    given = _mean_dice(dice_per_class(pred, target, n_classes, ignore_index))
    turned = _mean_dice(dice_per_class(pred, np.swapaxes(target, -1, -2), n_classes, ignore_index))
    if turned < 0.5 or turned < 2 * given or turned < given + 0.25:
        return ""
    return (f"{what} fits the prediction far better transposed (its last two axes, y and x, swapped: mean Dice "
            f"{turned:.4f} against {given:.4f} as given): it was probably saved transposed (a tool that writes (x, y) "
            f"arrays, or a .T). Transpose it ({TRANSPOSED_FIX}) and evaluate again; the Dice is of the file as given")


def transposed_shape_hint(labels_shape: tuple[int, ...], image_shape: tuple[int, ...]) -> str:
    """' (...)' when reference labels of another shape than the image are its axes in another order: the in-plane
    axes swapped (transposed), or every axis reversed ((x, y, z) against (z, y, x)); '' otherwise."""
    labels_shape, image_shape = tuple(labels_shape), tuple(image_shape)
    if len(labels_shape) != len(image_shape) or len(labels_shape) < 2 or labels_shape == image_shape:
        return ""
    if labels_shape[:-2] + labels_shape[-2:][::-1] == image_shape:
        return f": its last two axes are swapped (transposed); transpose it ({TRANSPOSED_FIX})"
    if labels_shape[::-1] == image_shape:
        return ": its axes are in reverse order ((x, y, z) against (z, y, x)); reverse them (in Python: labels.T)"
    return ""


def _mean_dice(per_class: Sequence[float]) -> float:
    values = [d for d in per_class if d == d]
    return float(np.mean(values)) if values else 0.0


def false_positive_only(pred: np.ndarray, target: np.ndarray, classes: Sequence[str],
                        ignore_index: int | None = None) -> dict[str, int]:
    """``{class name: predicted voxels}`` of the foreground classes with no voxel in ``target`` that ``pred`` finds
    (over labelled voxels): their Dice is 0 by this project's convention (MONAI's ``compute_dice`` with
    ``ignore_empty=False``; its default, ``ignore_empty=True``, gives NaN)."""
    valid = np.ones(np.shape(target), bool) if ignore_index is None else np.asarray(target) != ignore_index
    out = {}
    for c, name in enumerate(classes):
        if c and not np.any((target == c) & valid):
            n = int(np.count_nonzero((pred == c) & valid))
            if n:
                out[name] = n
    return out


def _few(values: Sequence[int], shown: int = 8) -> str:
    """``[1, 2, 3]``, or the first few values and how many there are."""
    return str(list(values)) if len(values) <= shown else f"{', '.join(map(str, values[:shown]))}, ... ({len(values)} values)"
