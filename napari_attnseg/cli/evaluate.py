"""`attnseg evaluate`: Dice per class of a model's prediction against reference labels."""

from __future__ import annotations

import argparse
import json
import sys

NAME = "evaluate"
HELP = "Dice per class of a model's prediction against reference labels."
IGNORE_255 = 255  # the 'unlabelled' value of many tools' label maps (ignore_index)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..options import DEVICES, PRECISIONS
    from .predict import _diameter  # (the same D|auto as attnseg predict)

    parser.add_argument("--model", required=True,
                        help="a bundled model, one of your models (attnseg models), a .safetensors file or "
                             "a folder train/finetune wrote")
    parser.add_argument("--image", required=True)
    parser.add_argument("--labels", required=True, help="reference labels on the image's grid, or a DICOM RTSTRUCT "
                        "or SEG file drawn on the image (a DICOM series)")
    parser.add_argument("--roi", help="with an RTSTRUCT/SEG --labels: the ROI/segment names to score, comma-separated, "
                        "as classes 1, 2, ... in this order (default: all, in the file's order)")
    parser.add_argument("--region", help="array-index box to score, e.g. '0:512,256:512' (a held-out part)")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--tta", action="store_true", help="average over flips (slower, smoother)")
    parser.add_argument("--channel", type=int, default=None, metavar="K",
                        help="the channel, colour or 4D NIfTI volume of --image to segment (as attnseg predict --channel)")
    parser.add_argument("--diameter", type=_diameter, default=None, metavar="D|auto",
                        help="typical object diameter in pixels, or 'auto' (as attnseg predict --diameter)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def region_box(text: str, shape: tuple[int, ...], image: str) -> tuple[slice, ...]:
    """``--region`` as slices, refused unless it is a non-empty box inside ``shape``."""
    from ..errors import InputError
    from ..training.sampling import parse_region

    example = ",".join(f"0:{n}" for n in shape)  # (every axis: a 3D image's example named two)
    try:
        box = parse_region(text, len(shape))
    except ValueError as exc:
        raise InputError(f"--region {text!r}: {exc}; give a box like {example!r}, one range per axis of {image}, "
                         f"of shape {shape}.") from None
    for axis, (s, size) in enumerate(zip(box, shape)):
        lo, hi = 0 if s.start is None else s.start, size if s.stop is None else s.stop
        if not 0 <= lo < hi <= size:
            raise InputError(f"--region {text!r}: {lo}:{hi} on axis {axis} is not a box inside {image}, of shape "
                             f"{shape}; give ranges within it, e.g. {example!r}.")
    return box


def reference_names(path: str, meta: dict) -> list[str] | None:
    """The class names of reference labels: those saved with the mask (napari's Correct panel, attnseg predict),
    else the label table of the dataset an exported label file belongs to (its manifest)."""
    from pathlib import Path

    from ..data.manifest import MANIFEST, read_manifest
    from ..errors import DatasetError

    if meta.get("class_names"):
        return [str(n) for n in meta["class_names"]]
    resolved = Path(path).resolve()
    for folder in resolved.parents[:2]:
        try:
            manifest = read_manifest(folder) if (folder / MANIFEST).is_file() else None
        except DatasetError:
            manifest = None
        for case in (manifest or {}).get("cases", []):
            rel = (case.get("files") or {}).get("label")
            if rel and (folder / rel).resolve() == resolved:
                return [str(n) for n in case.get("label_names") or manifest.get("label_names") or []] or None
    return None


def _reference(args: argparse.Namespace, image, spatial: tuple[int, ...], read_input):
    """``--labels``: a label file, or an RTSTRUCT/SEG drawn onto the image's grid (what it noticed on stderr)."""
    from ..data.labels_in import dicom_labels_kind, read_labels
    from ..errors import InputError

    if not dicom_labels_kind(args.labels):
        if args.roi:
            raise InputError(f"--roi picks ROIs of a DICOM RTSTRUCT or SEG; {args.labels} is neither: leave --roi out.")
        from ..data.alpha import mask_of_picture

        return mask_of_picture(read_input(args.labels))[0]  # (a palette PNG: its class ids, as export reads it)
    ref = read_labels(args.labels, image, args.roi.split(",") if args.roi else None, tuple(spatial))
    if ref.meta.get("warning"):
        print(f"{args.labels}: warning: {ref.meta['warning']}", file=sys.stderr)
    print(f"{args.labels}: classes {', '.join(f'{v} {n}' for v, n in enumerate(ref.meta['class_names']) if v)}",
          file=sys.stderr)
    return ref


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import numpy as np

    from .._paths import expand_user_args
    from ..checkpoint import load_model
    from ..cohort.cases import read_for_model
    from ..cohort.inputs import read_input
    from ..data.export import check_class_ids
    from ..data.export_plan import one_plane
    from ..data.grid import on_image_grid
    from ..data.manifest import ignore_value_of
    from ..data.mask_input import label_map_warning, refuse_our_output
    from ..data.orientation import volume_codes
    from ..errors import InputError
    from ..evaluation import (
        false_positive_only,
        label_mismatch,
        names_to_classes,
        probability_map_note,
        reviewed_in_region,
        scored_slices,
        transposed_note,
        transposed_shape_hint,
        unreviewed_slices,
    )
    from ..inference import predict
    from ..inference.checks import check_time_axis
    from ..training.losses import dice_per_class

    expand_user_args(args, "image", "labels")  # ("~/..." quoted for its spaces)
    refuse_our_output(args.image)  # (a mask given as the image scored the model on the mask's shapes)
    model = load_model(args.model, device=args.device)
    image = read_for_model(args.image, args.channel, model)
    ref = _reference(args, image, image.data.shape[1:] if model.in_channels > 1 else image.data.shape, read_input)
    refuse_our_output(args.image, image.meta)
    if time_lapse := check_time_axis(str(image.meta.get("axes") or ""), tuple(image.data.shape), args.image,
                                     model.in_channels > 1, model.spatial_dims):
        print(f"warning: {time_lapse}", file=sys.stderr)
    # the reference on the image's grid, as export takes it: stored in another orientation it is turned, voxel for
    # voxel (it was scored flipped); off the grid (shifted, another voxel size) it is refused, not scored
    ref, moved = on_image_grid(image, ref, "reference labels")
    if moved:
        print(f"note: {moved}", file=sys.stderr)
    labels = np.asarray(ref.data)
    # a 2D slice saved as NIfTI (X, Y, 1), read (1, Y, X), with its 2D reference (or the other way round): one plane,
    # scored as the 2D case export makes of the pair (and as a one-plane TIFF, which the reader squeezes)
    data, labels, plane, *_ = one_plane(np.asarray(image.data), labels, model.in_channels > 1, image.spacing, "",
                                        None, None, what=str(args.labels))
    if data.shape != image.data.shape:
        image = replace(image, data=data, spacing=tuple(plane))
    check_class_ids(labels, f"{args.labels} (the reference labels)")  # a probability map would score Dice 0
    # (a channel axis first when the model reads several; a 2D reference against a stack was broadcast over its slices)
    spatial = image.data.shape[1:] if model.in_channels > 1 else image.data.shape
    if labels.shape != spatial:
        raise InputError(f"{args.labels} has shape {labels.shape}, {args.image} has {tuple(spatial)}; they must match"
                         f"{' (one label per voxel of every slice)' if labels.ndim != len(spatial) else ''}"
                         f"{transposed_shape_hint(labels.shape, tuple(spatial))}.")
    prob_map = probability_map_note(labels, f"{args.labels} (the reference labels)")
    if prob_map:  # (whole numbers 0-255: scored as 252 classes, Dice 0.00 / 0.07)
        raise InputError(prob_map)
    # checked before the (long) prediction
    box = region_box(args.region, labels.shape, args.image) if args.region else None
    notes = []
    # a reference naming the model's classes in another order is scored by name, not value against value
    by_name, note = names_to_classes(reference_names(args.labels, ref.meta), model.card.classes or [])
    if note:
        notes.append(note)
    if by_name:
        named = labels
        labels = labels.astype(np.int32)
        for value, cls in by_name.items():
            labels[named == value] = cls
    ignore = ignore_value_of(args.labels)  # an exported label file: its unreviewed slices are not a reference
    if ignore is None and ref.meta.get("ignore_value") is not None:  # one saved elsewhere keeps the value itself
        ignore = int(ref.meta["ignore_value"])
    left_out = labels == ignore if ignore is not None else np.zeros(labels.shape, bool)
    if left_out.any():
        notes.append(f"{int(left_out.sum())} voxels hold the dataset's 'ignore' value {ignore} (slices nobody "
                     "reviewed): left out of the Dice")
    elif ignore is None and model.out_channels < IGNORE_255 and (labels == IGNORE_255).any() and \
            labels[labels != IGNORE_255].max(initial=0) < IGNORE_255 // 2:  # (not one of instance ids running past it)
        # 255: 'unlabelled' in many tools' label maps (an ignore_index); no model class, so never a prediction: scored,
        # each of them counted against the class the model found there (brain-mri-3d: GM 0.96 -> 0.12)
        left_out = labels == IGNORE_255
        notes.append(f"{int(left_out.sum())} voxels of {args.labels} hold 255, the value many tools give unlabelled "
                     "voxels (an ignore index), which the model does not predict: left out of the Dice; if 255 is a "
                     "class of yours, relabel it to the model's value")
    unchecked, said = unreviewed_slices(ref.meta, labels.shape, args.labels)  # (marks saved with the labels)
    if said:
        notes.append(said)
    if unchecked is not None:
        left_out = left_out | unchecked
    from ..data.dicom import inserted_slices

    if labels.ndim == 3 and (gone := inserted_slices(image.meta, labels.shape[0])):  # no image there: nothing to score
        from ..correct import format_slice_ranges

        left_out = left_out.copy()
        left_out[gone] = True
        notes.append(f"slice(s) {format_slice_ranges(gone)} of {args.image} hold no image (inserted where the series "
                     "misses images): left out of the Dice")
    scored = scored_slices(unchecked)  # (the reviewed slices; --region's only, and refused when it holds none)
    if box is not None and len(box) == 3:
        scored, said = reviewed_in_region(scored, box[0], labels.shape[0], args.region, args.labels)
        notes.extend([said] if said else [])
    if model.out_channels == 2 and labels[~left_out].max(initial=0) > 1:
        labels = (labels > 0).astype(np.uint8)
        notes.append("reference labels have several ids and the model is binary: scored as labels > 0")
    if left_out.any():
        labels = labels.astype(np.int32)  # (-1: left out; a uint8 -1 would wrap to 255)
        labels[left_out] = -1
    pred = predict(model, image.data, spacing=image.spacing, device=args.device, precision=args.precision,
                   orientation=volume_codes(image), return_probabilities=False, tta=args.tta, diameter=args.diameter)
    if mask_image := label_map_warning(image.data, args.image):
        pred.warnings.insert(0, mask_image)
    mismatch = label_mismatch([v for v in np.unique(labels).tolist() if v >= 0], pred.classes)
    if mismatch:
        notes.append(mismatch)
    mask = np.asarray(pred.labels)
    # a reference saved transposed keeps its shape on a square plane: scored silently (nuclei: Dice 0.95 -> 0.21)
    transposed = transposed_note(mask, labels, max(model.out_channels, 2), args.labels, ignore_index=-1)
    if transposed and box is not None:  # (the check needs the whole square plane; the Dice printed is --region's)
        transposed += " (the two Dice in this note are over the whole image, not --region)"
    if box is not None:
        mask, labels = mask[box], labels[box]
    dice = dice_per_class(mask, labels, max(model.out_channels, 2), ignore_index=-1)
    classes = pred.classes[1:]
    absent = [c for c, d in zip(classes, dice) if d != d]  # NaN: no voxel of it in the reference nor the prediction
    if absent:
        notes.append(f"no voxel of {', '.join(absent)} in the reference nor the prediction"
                     f"{' (in --region)' if box is not None else ''}: no Dice (null in --json)")
    false_pos = false_positive_only(mask, labels, pred.classes, ignore_index=-1)
    if false_pos:
        notes.append(f"no voxel of {', '.join(false_pos)} in the reference{' (in --region)' if box is not None else ''} "
                     f"but the model finds {', '.join(f'{n} voxels of {c}' for c, n in false_pos.items())}: Dice 0 "
                     "(false positives only; MONAI's compute_dice gives NaN there unless ignore_empty=False)")
    note = "; ".join([transposed, *notes] if transposed else notes)
    result = {"model": args.model, "image": args.image, "region": args.region,
              "device": getattr(pred, "device", None), "precision": getattr(pred, "precision", None),
              "tta": bool(getattr(args, "tta", False)),  # (two saved results told apart)
              "dice": {c: (None if d != d else d) for c, d in zip(classes, dice)},  # (NaN is not JSON: null)
              "reviewed_slices": scored,  # (the slices scored; null: every slice)
              "note": note, "warnings": list(pred.warnings)}
    for w in pred.warnings:
        print(f"{args.image}: warning: {w}", file=sys.stderr)
    if transposed and not args.json:  # (its own line, not lost among the notes)
        print(f"warning: {transposed}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        if notes:
            print(f"note: {'; '.join(notes)}")
        for c, d in result["dice"].items():
            print(f"{c}: Dice {'n/a' if d is None else f'{d:.4f}'}")
    return 0
