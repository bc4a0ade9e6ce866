"""Read a ``<stem>_predict.json`` record back as the segment widget's layers (napari's reader for it), placed
and named as the live run placed and named them: the image's pixel size and its units (µm of a TIFF, mm of a
scan; the record's own spacing and unit when the input is gone) and the channel that was segmented. Pure
numpy: the napari reader only hands these tuples to the viewer. :mod:`.results` writes the record."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from .data import read_image
from .data.orientation import volume_translate
from .errors import InputError
from .inference.prediction import AttentionMap, Prediction
from .layers import Placement, prediction_layers

RECORD_SUFFIX = "_predict.json"


def is_record(path: str | Path) -> bool:
    return Path(path).name.endswith(RECORD_SUFFIX)


def read_record(path: str | Path) -> dict:
    p = Path(path)
    try:
        record = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"{p} does not exist.") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{p} is not a readable prediction record ({exc}).") from None
    if not isinstance(record, dict) or "mask" not in record or "input" not in record:
        raise InputError(f"{p} is not a record written by `attnseg predict` (no 'input'/'mask' entries).")
    return record


def input_changed(record: dict, src: Path) -> str:
    """How the input ``src`` of a prediction record differs from the file the prediction was made on: its size or
    modification time changed since (another scan saved under the same name); '' when they match, when the record
    lacks them or ``src`` cannot be read. Where the record holds the input's digest (``input_sha256``, a series'
    ``images_sha256``) the content decides: a copy made without keeping times (``cp``, a download, another drive)
    is the same scan. A series folder is never judged by its time (a file added or removed beside its images, a
    viewer's DICOMDIR, changes it); a file's time within 2 s is the same (FAT/exFAT drives keep 2 s)."""
    import datetime

    from .data import input_stat

    try:
        size, modified = input_stat(src)
        was_size, was_time = record.get("input_size_bytes"), record.get("input_modified")
        folder = src.is_dir()
        same_size = was_size is None or folder or int(was_size) == size
        if same_size and (was_time is None or abs(float(was_time) - modified) <= 1e-3):
            return ""
        key = "images_sha256" if folder else "input_sha256"
        if same_size and record.get(key):  # (the time alone changed: the content tells)
            from .cohort.moved import input_identity

            if input_identity(src).get(key) == record[key]:
                return ""
        elif same_size and (folder or abs(float(was_time) - modified) <= 2.0):
            return ""
        when = "" if was_time is None else \
            f"the prediction of {datetime.datetime.fromtimestamp(float(was_time)):%Y-%m-%d %H:%M}"
    except (OSError, ValueError, TypeError):
        return ""
    said = ", ".join(w for w in ("" if same_size else f"{was_size} -> {size} bytes", when) if w)
    return (f"{src} changed since the prediction ({said}): if it is another scan, the mask beside the record was made "
            "on the earlier one; predict it again (attnseg predict ... --overwrite keeps a corrected mask in "
            "edited_masks/)")


def spacing_unit(meta: dict) -> str | None:
    """The length unit of an input's spacing as napari's ``units`` name it (what its reader gives the layer): mm
    of a DICOM series or a NIfTI (or the NIfTI's own xyz unit), a TIFF's calibration unit (``um``), else None."""
    from .data.tiff import tiff_unit

    if meta.get("format") == "dicom":
        return "mm"
    if meta.get("format") == "nifti":
        return {"micron": "um", "meter": "m"}.get(str((meta.get("nifti") or {}).get("xyz_units")), "mm")
    unit = tiff_unit(meta.get("unit")) if isinstance(meta.get("unit"), str) else None
    return {"micron": "um"}.get(unit, unit) if unit else None


def _output(folder: Path, name: str, record_path: Path, channels: bool = False, marks: dict | None = None) -> np.ndarray:
    """The array of the record's output ``name``; ``marks`` (given: the mask) gets what a mask saved over it with
    this plugin's writer keeps (reviewed slices, class names, 'ignore' value): they were dropped on reopening."""
    f = folder / name
    if not f.exists():
        raise InputError(f"{record_path} names {name}, which is not in {folder}; was it moved or deleted?")
    if channels and f.name.lower().endswith((".nii", ".nii.gz")):
        import nibabel as nib

        arr = np.asanyarray(nib.load(str(f)).dataobj)
        if arr.ndim == 4:  # one probability per class: (i, j, k, c) as written, (c, k, j, i) in the array convention
            return np.ascontiguousarray(arr.transpose(3, 2, 1, 0))
    volume = read_image(f)
    if marks is not None:
        marks.update({k: volume.meta[k] for k in ("reviewed_slices", "class_names", "ignore_value")
                      if volume.meta.get(k) is not None})
    return np.asarray(volume.data)


def _channel_name(read, image, name: str) -> str:
    """The image layer's name: ``name [GFP]`` (the OME channel name, else ``c1``) when the run segmented one
    channel of a multi-channel TIFF, as napari's reader names that channel's layer; ``name`` otherwise."""
    axes, k = str(read.meta.get("axes") or ""), image.meta.get("channel")
    found = [a for a in axes if a in "CS"]
    if image is read or not isinstance(k, int) or found[:1] != ["C"]:
        return name
    names = read.meta.get("channel_names") or []
    return f"{name} [{names[k] if k < len(names) else f'c{k}'}]"


def _axes_of(image, unit: str | None, ndim: int) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """The layers' ``units`` (``unit`` on z, y, x; ``pixel`` on a time axis) and, for a TIFF, its axis labels."""
    axes = str(image.meta.get("axes") or "") if image is not None else ""
    axes = axes[:-1] if axes.endswith("S") else axes
    if len(axes) != ndim:
        return ((unit,) * ndim if unit else None), None
    labels = tuple(a.lower() for a in axes) if image.meta.get("format") == "tiff" else None
    return (tuple(unit if a in "ZYX" else "pixel" for a in axes) if unit else None), labels


def record_layers(path: str | Path) -> list[tuple]:
    """Layer data tuples for a prediction record: the input image, the mask (labels), the probability
    (hidden) and one heatmap per attention level, placed exactly as the segment widget places them.

    A missing input image is a warning (the outputs still open, on the recorded pixel size); a missing
    output named by the record is an error that names it.
    """
    from .cohort.cases import read_with_channel
    from .cohort.inputs import segmented_channel

    p = Path(path)
    record = read_record(p)
    folder = p.parent
    name = p.name[: -len(RECORD_SUFFIX)]
    spacing = tuple(float(s) for s in record.get("spacing") or ())
    unit = record.get("unit") if isinstance(record.get("unit"), str) else None

    layers: list[tuple] = []
    image = None
    for candidate in (Path(record["input"]), folder / str(record.get("input_reference") or "")):
        if candidate != folder and candidate.exists():
            read, channel = read_with_channel(candidate, record.get("channel"))  # (a 4D NIfTI: its volume)
            image = segmented_channel(read, channel)
            name = _channel_name(read, image, name)
            if changed := input_changed(record, candidate):  # (the same shape: the old scan's mask on the new one)
                warnings.warn(f"{p}: {changed}.", stacklevel=2)
            break
    colour = image is not None and str(image.meta.get("axes", "")).endswith("S")  # a picture: (y, x, RGB)
    if image is not None:
        spacing = tuple(float(s) for s in image.spacing)[:image.data.ndim - colour]
        unit = spacing_unit(image.meta)
        meta = {"source_path": str(image.meta.get("source_path", record["input"])), "spacing": list(spacing),
                "format": image.meta.get("format")}
        if image.affine is not None:
            meta["affine"] = np.asarray(image.affine).tolist()
        for key in ("nifti", "modality"):  # header codes and qform: a mask saved from napari keeps them
            if image.meta.get(key):
                meta[key] = image.meta[key]
        translate = volume_translate(image) or (0.0,) * len(spacing)
        units, axis_labels = _axes_of(image, unit, len(spacing))
        layers.append((image.data, {"name": name, "scale": spacing, "translate": translate, "metadata": meta,
                                    **({"rgb": True} if colour else {}), **({"units": units} if units else {}),
                                    **({"axis_labels": axis_labels} if axis_labels else {})}, "image"))
    else:
        warnings.warn(f"{p}: the input {record['input']} is gone; showing the outputs only.", stacklevel=2)

    marks: dict = {}  # (the mask corrected, reviewed and saved over the prediction with File > Save)
    labels = _output(folder, record["mask"], p, marks=marks)
    if image is not None and tuple(image.data.shape[:image.data.ndim - colour][-labels.ndim:]) != labels.shape:
        raise InputError(f"{p}: the mask {record['mask']} has shape {labels.shape} but the input "
                         f"{record['input']} has {image.data.shape}; the input was replaced since the prediction.")
    if len(spacing) != labels.ndim:
        spacing = (1.0,) * labels.ndim
    units, axis_labels = _axes_of(image, unit, labels.ndim)
    probabilities = None
    if record.get("probability"):
        fg = _output(folder, record["probability"], p, channels=True).astype(np.float32)
        fg = fg[None] if fg.ndim == labels.ndim else fg
        probabilities = np.concatenate([np.clip(1.0 - fg.sum(0, keepdims=True), 0, 1), fg])
    maps = [AttentionMap(m["name"], int(m["level"]), _output(folder, m["file"], p).astype(np.float32),
                         tuple(m["scale"]), tuple(m["translate"])) for m in record.get("attention", [])]
    pred = Prediction(labels=labels, probabilities=probabilities, attention=maps,
                      classes=list(record.get("classes") or []), device=record.get("device", ""),
                      precision=record.get("precision", ""), timings=dict(record.get("timings_s") or {}),
                      params=dict(record.get("params") or {}), warnings=list(record.get("warnings") or []))
    meta = {"source_layer": name, "model": record.get("model"), "checkpoint": record.get("model_path"),
            "checkpoint_sha256": record.get("model_weights_sha256"), "device": pred.device,
            "precision": pred.precision, "params": pred.params, "timings": pred.timings, "record": str(p)}
    where = translate if image is not None and len(translate) == labels.ndim else (0.0,) * labels.ndim
    layers += prediction_layers(None, pred, name, Placement(spacing, tuple(where), units=units,
                                                            axis_labels=axis_labels), meta=meta)
    for _data, kwargs, kind in layers:
        if kind == "labels" and marks:
            kwargs["metadata"].update(marks)
            if marks.get("class_names") and "ignore_value" not in marks:
                kwargs["features"] = {"class": list(marks["class_names"])}
    return layers
