"""`attnseg export`: add an image and its corrected mask to a fine-tuning dataset."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ._export_marks import _marks_from_dataset, saved_model_classes  # noqa: F401 (re-exported: their home was here)

NAME = "export"
HELP = "Add an image and its corrected mask to a fine-tuning dataset (nnU-Net, MONAI or TIFF layout)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..options import DATASET_FORMATS

    parser.add_argument("--image", required=True, help="image file (TIFF, NIfTI) or DICOM folder / file of the series")
    parser.add_argument("--labels", required=True, help="corrected mask (TIFF, NIfTI, MetaImage/NRRD, PNG) on the "
                                                          "image's grid, or a DICOM RTSTRUCT/SEG drawn on it")
    parser.add_argument("--dataset", required=True, help="dataset folder (created, or appended to)")
    parser.add_argument("--format", default="nnunet", choices=DATASET_FORMATS)
    parser.add_argument("--reviewed-slices", metavar="a,b,c-d",
                        help="axial slices (first array axis = NIfTI k) a person checked, e.g. 3,5,10-12; "
                             "the others become the 'ignore' label (default: the reviewed slices saved in the "
                             "--labels file by the Correct panel; a file without them: every slice is labelled)")
    parser.add_argument("--channel", type=int, default=None, metavar="K",
                        help="the channel, colour or 4D NIfTI volume of --image that the mask was made on (as "
                             "`attnseg predict --channel K`; default: that run's choice, saved in its record next "
                             "to the mask)")
    colour = parser.add_mutually_exclusive_group()
    colour.add_argument("--keep-colour", action="store_true",
                        help="an RGB picture: keep its colours in the dataset (one RGB TIFF a case, channels R, G, B), "
                             "to fine-tune a model that reads colour (default when the model saved with the mask reads "
                             "3 or 4 channels)")
    colour.add_argument("--grey", action="store_true",
                        help="an RGB picture: write the grey image a one-channel model segments of it (its grey, one "
                             "colour or the hematoxylin of an H&E slide), even when the mask's model reads colour "
                             "(default for any other mask)")
    parser.add_argument("--prediction", help="the model's original mask, to record what was edited")
    parser.add_argument("--case-id", help="case id (default: the next free case_NNNN)")
    parser.add_argument("--label-names", help="comma-separated class names, background first (new datasets; "
                                              "default: the names saved with the mask (napari, an RTSTRUCT's ROIs), "
                                              "else --model's classes, else those of the model attnseg predict saved "
                                              "with the mask, else background,foreground)")
    parser.add_argument("--channel-names", help="comma-separated channel names for dataset.json (new datasets; "
                                                "default: the channel's own name in an OME-TIFF, e.g. DAPI; CT for a "
                                                "CT: a DICOM series of modality CT or an image in Hounsfield units; "
                                                "else 'image')")
    parser.add_argument("--source-name", help="name recorded in the manifest (default: the image's file name)")
    parser.add_argument("--model", help="model name or checkpoint that produced --prediction (its name and the "
                                        "sha256 of its weights are recorded; default: the model attnseg predict "
                                        "saved with the mask)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing case with the same id")
    parser.add_argument("--foreground", action="store_true",
                        help="export labels > 0 as one class (for instance ids: one value per object)")
    parser.add_argument("--roi", help="with a DICOM RTSTRUCT/SEG --labels: the ROI/segment names to export, "
                        "comma-separated, as classes 1, 2, ... in this order (default: all, in the file's order)")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import numpy as np

    from .._paths import expand_user_args
    from ..checkpoint import model_identity
    from ..correct import format_slice_ranges, parse_slice_ranges
    from ..data import read_image
    from ..data.export import check_class_ids, export_case
    from ..data.export_colour import picture_for_export
    from ..data.export_plan import names_by_value, one_plane, without_inserted
    from ..data.grid import on_image_grid
    from ..data.hyperstack import own_channel_names
    from ..data.label_values import class_key
    from ..data.labels_in import dicom_labels_kind, read_labels
    from ..data.layouts import manifest_or_empty
    from ..data.volume import Volume
    from ..errors import InputError

    expand_user_args(args, "image", "labels", "dataset", "prediction")  # ("~/..." quoted for its spaces)
    if args.image and Path(str(args.image)).resolve() == Path(str(args.labels)).resolve():
        raise InputError(f"{args.labels}: --labels names the image itself (--image {args.image}); give the mask file "
                         "(e.g. <stem>_mask.nii.gz from attnseg predict, or the labels saved from napari).")
    if dicom := dicom_labels_kind(args.labels):  # an RTSTRUCT or SEG: drawn onto the image's grid, the image first
        image = _image_of(args, Volume(np.zeros(0), ()))
        raw_labels = read_labels(args.labels, image, args.roi.split(",") if args.roi else None)
        if raw_labels.meta.get("warning"):
            print(f"{args.labels}: warning: {raw_labels.meta['warning']}", file=sys.stderr)
    else:
        if args.roi:
            raise InputError(f"--roi picks ROIs of a DICOM RTSTRUCT or SEG; {args.labels} is neither: leave it out.")
        raw_labels = _palette_mask(args.labels, read_image(args.labels))  # (a palette PNG: its indices, not colours)
        _marks_from_dataset(args.labels, raw_labels)
        image = _image_of(args, raw_labels)
        from ..data.mask_input import label_map_warning, looks_like_an_image

        if label_map_warning(image.data, args.image) and looks_like_an_image(raw_labels.data) \
                and not label_map_warning(raw_labels.data, args.labels):  # (instance ids of > 20 objects: a mask)
            raise InputError(f"--image {args.image} looks like a label mask and --labels {args.labels} like an image: "
                             "were they swapped? Give the scan as --image and the mask as --labels.")
    keep = True if args.keep_colour else False if args.grey else None
    target = manifest_or_empty(args.dataset)  # (read before the images: the kind of dataset this case joins)
    # (--model as given: its card tells whether it reads colour; else the model saved with the mask)
    info = ({"model": str(args.model), "checkpoint": str(args.model)} if args.model else
            raw_labels.meta.get("model_info") or _record_model(raw_labels))
    image, colours, note = picture_for_export(image, np.ndim(raw_labels.data), str(args.image), keep, info, args.labels,
                                            into_colour=bool(target.get("colour")))
    if note:
        print(note, file=sys.stderr)
    labels, note = on_image_grid(image, raw_labels, "labels")
    if note:
        print(note, file=sys.stderr)
    from ..data.mask_input import stale_prediction

    if stale := stale_prediction(args.labels, args.image):  # (the same grid: nothing else tells the old scan's mask)
        print(f"{args.labels}: warning: {stale}. Export it only if {args.image} is the scan the mask was made on.",
              file=sys.stderr)
    check_class_ids(np.asarray(labels.data), f"{args.labels} (labels)")  # refused with the file's name
    prediction = pred_names = None
    if args.prediction:
        pred, note = on_image_grid(image, _palette_mask(args.prediction, read_image(args.prediction)), "prediction")
        if note:
            print(note, file=sys.stderr)
        prediction = np.asarray(pred.data)
        check_class_ids(prediction, f"{args.prediction} (prediction)")  # a probability map would skew the edit stats
        pred_names = _prediction_names(args, pred.meta, dicom)
    names = args.label_names.split(",") if args.label_names else None
    if names and names[0].strip().lower().strip("_ ") not in BACKGROUND_NAMES \
            and "background" not in (n.strip().lower() for n in names):  # a misplaced 'background' is refused
        print(f"{args.labels}: warning: --label-names name value 0 {names[0].strip()!r}; value 0 is the background "
              f"(unlabelled voxels), so the names start with it: e.g. --label-names background,{','.join(names)}",
              file=sys.stderr)
    saved = [str(n) for n in labels.meta.get("class_names") or []]
    if names and saved and not args.foreground:  # the mask's own names (napari, predict) against --label-names
        key = {class_key(n): v for v, n in enumerate(saved)}
        moved = [(v, n.strip(), key[k]) for v, n in enumerate(names) if (k := class_key(n)) in key
                 and key[k] != v]
        if moved:
            print(f"{args.labels}: warning: --label-names name value(s) "
                  + ", ".join(f"{v} {n!r}" for v, n, _ in moved) + "; the mask was saved with "
                  + ", ".join(f"{n!r} as value {w}" for _, n, w in moved) + f" ({', '.join(saved)}). Values are "
                  "exported as they are, so these classes swap names: leave out --label-names to use the mask's names.",
                  file=sys.stderr)
    new_dataset = not (Path(args.dataset) / "manifest.json").exists()
    # the names the mask was saved with (napari's Correct panel, Save mask), an RTSTRUCT/SEG's ROI names: into an
    # existing dataset matched to its classes by name (export_case: renumbered, a class it lacks refused); a saved
    # mask's names that are none of the dataset's (a model's 'nucleus' against 'foreground') go in by value, warned
    if names is None and labels.meta.get("class_names") and not args.foreground:
        carried = [str(n) for n in labels.meta["class_names"]]
        if not new_dataset and not dicom and (note := names_by_value(carried, args.dataset, str(args.labels))):
            print(f"{args.labels}: warning: {note}", file=sys.stderr)
        else:
            names = carried
            whose = f"of its {'ROIs' if dicom == 'RTSTRUCT' else 'segments'}" if dicom else "saved with the mask"
            print(f"{args.labels}: using the class names {whose}: {', '.join(names)} (--label-names overrides)",
                  file=sys.stderr)
    top = 1 if args.foreground else int(np.asarray(labels.data).max(initial=0))
    if names is None and args.model and new_dataset:
        from ..checkpoint import read_card, resolve_model_path  # a new dataset: the model's class names

        classes = [str(c) for c in (read_card(resolve_model_path(args.model)).classes or [])]
        if len(classes) >= 2 and top < len(classes):
            names = classes
    if names is None and not args.model and new_dataset and labels.meta.get("model_info"):
        classes = saved_model_classes(Path(args.labels), labels.meta["model_info"])  # (attnseg predict's mask)
        if len(classes) >= 2 and top < len(classes):
            names = classes
            print(f"{args.labels}: using the class names of the model saved with the mask: {', '.join(names)} "
                  "(--label-names overrides)", file=sys.stderr)
    if labels.meta.get("reviewed_slices_dropped") and not args.reviewed_slices:
        raise InputError(f"{args.labels} carries reviewed-slice marks numbered in its own orientation, which differs "
                         f"from {args.image}'s; pass --reviewed-slices with the slice numbers of the image.")
    reviewed = parse_slice_ranges(args.reviewed_slices) if args.reviewed_slices else labels.meta.get("reviewed_slices")
    if not args.reviewed_slices and reviewed is not None:
        print(f"{args.labels}: using the reviewed slices saved with the mask: {format_slice_ranges(reviewed)} "
              "(--reviewed-slices overrides)", file=sys.stderr)
    ignore = labels.meta.get("dataset_ignore")
    if ignore is not None and reviewed:  # a slice nobody reviewed in that export, given as reviewed now
        held = [z for z in reviewed if 0 <= z < np.shape(labels.data)[0] and (np.asarray(labels.data[z]) == ignore).any()]
        if held:
            raise InputError(f"{args.labels}: slice(s) {format_slice_ranges(held)} hold the dataset's 'ignore' value "
                             f"{ignore} (not reviewed in that export), so they cannot be exported as reviewed: label "
                             "them first (in napari: open the file, paint the slice, press R) or leave them out of "
                             "--reviewed-slices.")
    channels = args.channel_names.split(",") if args.channel_names else None  # None: CT when in HU, else image
    # a TIFF with a channel axis (ImageJ/OME axes CYX, ZCYX: e.g. two stains) and labels without it: channels first
    axes, spacing = str(image.meta.get("axes", "")), tuple(image.spacing)
    data = np.asarray(image.data if colours is None else colours[..., 0])  # (the picture's colours: written below)
    stacked = "C" in axes and len(axes) == data.ndim == np.ndim(labels.data) + 1
    if stacked:
        c = axes.index("C")
        data, spacing = np.moveaxis(data, c, 0), spacing[:c] + spacing[c + 1:]
    own = None if channels or colours is not None else own_channel_names(image.meta, stacked)  # (OME: DAPI)
    if own and new_dataset:
        print(f"{args.image}: naming the channel{'s' if len(own) > 1 else ''} {', '.join(own)} in the dataset, as the "
              "file does (--channel-names overrides)", file=sys.stderr)
    # a 2D slice saved as NIfTI (X, Y, 1), read (1, Y, X), with its 2D mask (or the other way round): one 2D plane
    mask = np.asarray(labels.data)
    data, mask, spacing, axes, reviewed, prediction = one_plane(data, mask, stacked, spacing, axes, reviewed, prediction,
                                                                str(args.labels), target.get("spatial_dims") == 3)
    spatial, shape = data.shape[1:] if stacked else data.shape, mask.shape
    if len(spatial) in (2, 3) and tuple(shape) != tuple(spatial):  # (said without either file's name)
        swapped = " (the same sizes in another axis order: saved transposed?)" if sorted(shape) == sorted(spatial) else ""
        raise InputError(f"--labels {args.labels} has shape {tuple(shape)}, but --image {args.image} has shape "
                         f"{tuple(spatial)}{swapped}; a mask must be on its image's grid: give the mask made on this "
                         "image (attnseg predict's <stem>_mask, or the labels saved from napari on it), or the image "
                         "the mask was drawn on.")
    model_info = model_identity(args.model) if args.model else {}
    if not model_info and labels.meta.get("model_info"):  # the model saved with the mask (napari, predict)
        model_info = model_identity(labels.meta["model_info"])
        print(f"{args.labels}: recording the model saved with the mask: {model_info['model']} (--model overrides)",
              file=sys.stderr)
    if reviewed is None:  # (every slice was exported as checked ground truth, unsaid: a raw prediction too)
        _all_reviewed_note(args, shape, axes.replace("C", "") if stacked else axes)
    reviewed = without_inserted(image.meta, reviewed, shape[0], str(args.image))  # (a series' missing images)
    record = export_case(
        data if colours is None else colours, mask, args.dataset, args.format, channel_axis=stacked,
        spacing=spacing, affine=image.affine,
        reviewed_slices=reviewed,
        prediction=prediction, prediction_names=pred_names, case_id=args.case_id,
        label_names=names,
        channel_names=channels, source_name=args.source_name or Path(os.path.abspath(args.image)).name,  # ('.': its folder's name)
        model_info=model_info, overwrite=args.overwrite,
        foreground=args.foreground, modality=image.meta.get("modality"), labels_name=str(args.labels),
        nifti=image.meta.get("nifti"),  # the source's qform/sform codes: ITK viewers place the case as the source
        unit=image.meta.get("unit"),  # a TIFF's length unit (ImageJ 'micron'): the TIFF layout keeps it for Fiji
        axes=axes.replace("C", "") if stacked else axes,  # a time-lapse's TYX: its frames stay frames (not z-slices)
        colour=colours is not None, default_channel_names=own,  # (an existing dataset keeps its table)
    )
    for w in record.warnings:
        print(f"{args.dataset}: warning: {w}", file=sys.stderr)
    extra = f", {len(record.reviewed_slices)} reviewed slices, rest 'ignore'" if record.reviewed_slices is not None else ""
    if record.frames:  # a time-lapse in nnU-Net / MONAI: one 2D case per frame
        n, total = len(record.frames), int(np.shape(labels.data)[0])
        left = (f"; the {total - n} frame(s) not marked reviewed are left out (a frame all 'ignore' teaches nothing)"
                if n < total else "")
        cases = f"2D cases {record.frames[0]} .. {record.frames[-1]}" if n > 1 else f"the 2D case {record.frames[0]}"
        print(f"exported {n} of the {total} frames of the time-lapse {args.image} as {cases} to {args.dataset} "
              f"({args.format}, each of shape {record.shape}): nnU-Net and "
              f"MONAI take a 3D file for a volume, so each frame is a 2D image of its own, not a z-slice{left}")
        return 0
    print(f"exported {record.case_id} to {args.dataset} ({args.format}, shape {record.shape}{extra})")
    return 0


def _prediction_names(args, meta: dict, dicom: str | None) -> list[str] | None:
    """The class names of ``--prediction`` (the model's mask), by which export_case puts it in the dataset's numbering
    for the edit statistics: those saved in the file (attnseg predict's mask names the model's classes), else
    ``--model``'s; without either, an RTSTRUCT's labels (numbered in the file's ROI order, which no model shares) leave
    it in the dataset's numbering, other labels their own (a mask saved from napari is numbered as its model's)."""
    import sys

    from ..data.manifest import read_manifest

    if meta.get("class_names"):
        return [str(n) for n in meta["class_names"]]
    if args.model:
        from ..checkpoint import read_card, resolve_model_path

        classes = [str(c) for c in (read_card(resolve_model_path(args.model)).classes or [])]
        if len(classes) >= 2:
            return classes
    table = read_manifest(Path(args.dataset)) if dicom == "RTSTRUCT" and Path(args.dataset).is_dir() else None
    if table is None:
        return None
    print(f"{args.prediction}: note: its classes are not named (no class names in the file, no --model): compared "
          "with the labels in the dataset's numbering (" + ", ".join(
              f"{v} {n}" for v, n in enumerate(table["label_names"]) if v) + "); pass --model to name them",
          file=sys.stderr)
    return [str(n) for n in table["label_names"]]


def _all_reviewed_note(args, shape: tuple, axes: str) -> None:
    """Without --reviewed-slices and marks saved with the mask, every slice is exported as reviewed: say so once, and
    warn when the mask is an unchanged ``attnseg predict`` output (the model's own prediction, not corrections; not
    refused: a user may have checked it whole)."""
    import sys

    from ..data.mask_input import automatic_seg, unedited_prediction

    if len(shape) >= 3:
        what = "frames" if axes[:1] == "T" and len(axes) == len(shape) else "slices"
        print(f"{args.labels}: note: no --reviewed-slices and none saved with the mask: all {shape[0]} {what} are "
              "exported as reviewed (fine-tuning trusts every one); to export only the ones a person checked, pass "
              "--reviewed-slices a,b,c-d (e.g. 20,32-34), the others become 'ignore'.", file=sys.stderr)
    if record := unedited_prediction(args.labels):
        print(f"{args.labels}: warning: this is the mask attnseg predict wrote ({record}), unchanged since: the "
              "model's own prediction, not corrections. Fine-tuning on it learns the model's mistakes back; correct it "
              "first (napari: open it on the image, fix the slices, press R on each, save) and export that, unless you "
              "checked it whole and found it right.", file=sys.stderr)
    elif seg := automatic_seg(args.labels):
        print(f"{args.labels}: warning: this DICOM SEG is {seg}, AUTOMATIC: the model's own prediction, not "
              "corrections. Fine-tuning on it learns the model's mistakes back; correct it first (napari: open the "
              "series and this SEG on it, fix the slices, press R on each, Save mask as a DICOM SEG) and export that, "
              "or pass --reviewed-slices with the slices you checked and found right.", file=sys.stderr)


def _palette_mask(path, labels):
    """A mask saved as a picture: a palette (P mode) PNG's indices (PASCAL VOC style; the palette only colours the
    class ids), a grey mask saved as RGB its grey (:func:`~napari_attnseg.data.alpha.mask_of_picture`); both were read
    as colours and refused as not on the image's grid."""
    import sys

    from ..data.alpha import mask_of_picture

    found, note = mask_of_picture(labels)
    if note:
        print(f"{path}: {note}", file=sys.stderr)
    return found


BACKGROUND_NAMES = {"background", "bg", "back", "none", "nothing", "unlabelled", "unlabeled", "clear", "other", "0",
                    "normal", "healthy", "tissue", "outside"}


def _image_of(args, labels):
    """``--image`` as the mask was made on it: ``--channel K``, else the channel that ``attnseg predict`` segmented
    when ``--labels`` is its mask (the ``channel`` of the record beside it): a colour, a channel, or a 4D NIfTI's
    volume (which cannot be read whole). A colour picture without either gives the grey image predict chooses."""
    import sys

    import numpy as np

    from ..cohort.cases import read_with_channel
    from ..cohort.inputs import pick_channel
    from ..data.hyperstack import time_lapse_of_volumes
    from ..errors import InputError
    from ..results import RECORD_SUFFIX, read_record

    channel = args.channel
    if channel is None and isinstance(rec := _record_of(labels, RECORD_SUFFIX, read_record), dict):
        if isinstance(rec.get("channel"), int) and Path(str(rec.get("input", ""))).resolve() == Path(args.image).resolve():
            channel = rec["channel"]
            print(f"{args.labels}: exporting channel {channel} of {args.image}, which the mask was made on (its "
                  "record says so; --channel overrides)", file=sys.stderr)
    image, left = read_with_channel(args.image, channel)
    if refusal := time_lapse_of_volumes(str(image.meta.get("axes") or ""), np.shape(image.data), args.image, left,
                                        image.meta.get("channel_names")):  # (channel, then time, were refused in turn)
        raise InputError(refusal)
    if image.meta.get("warning"):  # what the reader noticed (which DICOM series of a folder, uneven slices, ...)
        print(f"{args.image}: warning: {image.meta['warning']}", file=sys.stderr)
    return image if left is None else pick_channel(image, left, 1, args.image)


def _record_model(labels) -> dict | None:
    """The model of the prediction record beside a mask that carries none itself (a copy saved by another tool under
    predict's name): its name, checkpoint and weights, for :func:`~napari_attnseg.data.export_colour.model_channels`."""
    from ..results import RECORD_SUFFIX, read_record

    rec = _record_of(labels, RECORD_SUFFIX, read_record)
    if not isinstance(rec, dict) or not (rec.get("model") or rec.get("model_path")):
        return None
    return {"model": rec.get("model"), "checkpoint": rec.get("model_path"), "weights_sha256": rec.get("model_weights_sha256")}


def _record_of(labels, suffix: str, read_record) -> dict | None:
    """The prediction record beside a mask written by ``attnseg predict`` (``<stem>_mask.* -> <stem>_predict.json``)."""
    path = Path(str(labels.meta.get("source_path", "")))
    name = path.name
    for ext in (".nii.gz", ".nii", ".tif", ".tiff"):
        if name.endswith("_mask" + ext):
            record = path.with_name(name[: -len("_mask" + ext)] + suffix)
            try:
                return read_record(record) if record.exists() else None
            except Exception:  # noqa: BLE001 - a damaged record: export without its hint
                return None
    return None
