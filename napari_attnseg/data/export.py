"""Export image + corrected mask as a fine-tuning dataset: nnU-Net v2 raw, MONAI datalist or TIFF pairs.

Crash safety: every file goes to a temporary name and is renamed into place; ``manifest.json`` (and
``dataset.json`` / ``datalist.json``) are rewritten last, atomically. A case counts only once it is in
the manifest, so an export killed at any point leaves the dataset as it was before or as after.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write
from ..errors import DatasetError, InputError
from .io import write_image

FORMATS = ("nnunet", "monai", "tiff")
MANIFEST = "manifest.json"
_CASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass
class CaseRecord:
    case_id: str
    source_name: str
    image_sha256: str
    shape: list[int]
    spacing: list[float]
    label_names: list[str]
    reviewed_slices: list[int] | None
    ignore_label: int | None
    model: dict[str, Any] = field(default_factory=dict)
    edit_stats: dict[str, Any] | None = None
    files: dict[str, Any] = field(default_factory=dict)
    exported: str = ""


def array_sha256(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(str((a.dtype.str, a.shape)).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def write_json_atomic(path: Path, obj: Any) -> None:
    def dump(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, dump)


def detect_format(folder: Path) -> str | None:
    if (folder / MANIFEST).exists():
        try:
            return json.loads((folder / MANIFEST).read_text()).get("format")
        except ValueError:
            raise DatasetError(f"{folder / MANIFEST} is not valid JSON; the dataset manifest is damaged.") from None
    if (folder / "dataset.json").exists() or (folder / "imagesTr").is_dir():
        return "nnunet"
    if (folder / "datalist.json").exists():
        return "monai"
    if (folder / "images").is_dir() and any((folder / "images").glob("*.tif*")):
        return "tiff"
    return None


def _validate(image: np.ndarray, labels: np.ndarray, channel_axis: bool) -> None:
    spatial = image.shape[1:] if channel_axis else image.shape
    if tuple(labels.shape) != tuple(spatial):
        raise InputError(f"Labels of shape {labels.shape} do not match the image's shape {tuple(spatial)}; "
                         "export the mask that belongs to this image.")
    if labels.dtype.kind == "f":
        if not np.all(np.mod(labels, 1) == 0):
            raise InputError("Labels must be whole numbers (class ids); got fractional values. Use a Labels layer.")
    elif labels.dtype.kind not in "iub":
        raise InputError(f"Labels must be integers; got dtype {labels.dtype}.")
    if labels.size and labels.min() < 0:
        raise InputError("Labels must not be negative; class ids start at 0 (background).")


def export_case(
    image: np.ndarray,
    labels: np.ndarray,
    dataset_dir: str | os.PathLike,
    format: str = "nnunet",
    *,
    spacing: Sequence[float] | None = None,
    affine: np.ndarray | None = None,
    reviewed_slices: Sequence[int] | None = None,
    prediction: np.ndarray | None = None,
    case_id: str | None = None,
    label_names: Sequence[str] | None = None,
    channel_names: Sequence[str] | None = None,
    source_name: str = "image",
    model_info: dict[str, Any] | None = None,
    overwrite: bool = False,
    channel_axis: bool = False,
) -> CaseRecord:
    """Add one case (image + corrected labels) to the dataset at ``dataset_dir``.

    Unreviewed slices (when ``reviewed_slices`` is given; axial = first-axis indices) become the
    ``ignore`` label, the last label of the table (nnU-Net v2 convention), so training learns only
    from what a person checked. Nothing is written when any input is invalid.
    """
    from ..correct import edit_stats, ignore_unreviewed

    if format not in FORMATS:
        raise InputError(f"format must be one of {', '.join(FORMATS)}; got {format!r}.")
    folder = Path(dataset_dir)
    image = np.asarray(image)
    labels = np.asarray(labels)
    _validate(image, labels, channel_axis)
    labels = labels.astype(np.uint8 if labels.max(initial=0) < 255 else np.uint16)
    n_classes = int(labels.max(initial=0)) + 1
    spatial = labels.shape
    spacing = [float(s) for s in (spacing or (1.0,) * len(spatial))]
    if format == "tiff" and len(spatial) == 3 and image.ndim > 3:
        raise InputError("The TIFF layout is for 2D or single-channel 3D images; use nnunet or monai.")

    # existing dataset: same format, compatible label table
    folder.mkdir(parents=True, exist_ok=True) if not folder.exists() else None
    if not os.access(folder, os.W_OK):
        raise DatasetError(f"Cannot write to {folder}; choose a folder you can write to.")
    existing = detect_format(folder)
    if existing is not None and existing != format:
        raise DatasetError(f"{folder} holds a {existing} dataset; export to it with format {existing!r} or pick another folder.")
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    if label_names:
        names = list(label_names)
    elif manifest is not None:
        names = list(manifest["label_names"])
    else:
        names = ["background", "foreground"] if n_classes <= 2 else ["background"] + [f"class {i}" for i in range(1, n_classes)]
    if manifest is None:
        if n_classes > len(names):
            raise InputError(f"The labels hold values up to {n_classes - 1} but the label table has only "
                             f"{len(names)} entries ({', '.join(names)}).")
        manifest = {"format": format, "label_names": names, "cases": []}
    table = manifest["label_names"]
    if names[: len(table)] != table[: len(names)]:
        raise InputError(f"The label names {names} differ from the dataset's ({table}).")
    if n_classes > len(table) and len(names) > len(table):
        manifest["label_names"] = table = names
    elif n_classes > len(table):
        raise InputError(f"Label value {n_classes - 1} is not in the dataset's label table ({', '.join(table)}).")

    ignore_value = None
    exported = labels
    if reviewed_slices is not None:
        ignore_value = len(table)
        exported = ignore_unreviewed(labels, reviewed_slices, ignore_value)

    ids = [c["case_id"] for c in manifest["cases"]]
    if case_id is None:
        n = len(ids)
        while f"case_{n:04d}" in ids:
            n += 1
        case_id = f"case_{n:04d}"
    if not _CASE_RE.match(case_id):
        raise InputError(f"Case id {case_id!r} may only hold letters, digits, '_' and '-'.")
    if case_id in ids and not overwrite:
        raise DatasetError(f"Case {case_id!r} already exists in {folder}; choose another id or allow overwriting.")

    chans = image if channel_axis else image[None]
    files = _write_case_files(folder, format, case_id, chans, exported, spacing, affine)
    record = CaseRecord(
        case_id=case_id, source_name=str(source_name), image_sha256=array_sha256(image), shape=list(spatial),
        spacing=spacing, label_names=list(table), reviewed_slices=sorted(int(s) for s in reviewed_slices)
        if reviewed_slices is not None else None, ignore_label=ignore_value, model=dict(model_info or {}),
        edit_stats=edit_stats(prediction, labels) if prediction is not None else None, files=files,
        exported=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    manifest["cases"] = [c for c in manifest["cases"] if c["case_id"] != case_id] + [asdict(record)]
    _write_index(folder, format, manifest, chans.shape[0], channel_names)
    write_json_atomic(manifest_path, manifest)
    return record


def _write_case_files(folder, format, case_id, chans, labels, spacing, affine) -> dict[str, Any]:
    slow = float(os.environ.get("ATTNSEG_EXPORT_TEST_DELAY", "0"))  # lets the kill test land mid-export
    if format == "nnunet":
        images = []
        for c, data in enumerate(chans):
            p = folder / "imagesTr" / f"{case_id}_{c:04d}.nii.gz"
            write_image(p, data, spacing=spacing, affine=affine)
            images.append(str(p.relative_to(folder)))
            if slow:
                import time

                time.sleep(slow)
        lab = folder / "labelsTr" / f"{case_id}.nii.gz"
        write_image(lab, labels, spacing=spacing, affine=affine)
        return {"images": images, "label": str(lab.relative_to(folder))}
    ext = ".nii.gz" if format == "monai" else ".tif"
    img_path = folder / "images" / f"{case_id}{ext}"
    data = chans if chans.shape[0] > 1 else chans[0]
    if format == "monai" and chans.shape[0] > 1:
        raise InputError("Multi-channel MONAI export is not supported; use the nnunet format.")
    write_image(img_path, data, spacing=spacing, affine=affine)
    if slow:
        import time

        time.sleep(slow)
    lab = folder / "labels" / f"{case_id}{ext}"
    write_image(lab, labels, spacing=spacing, affine=affine)
    return {"images": [str(img_path.relative_to(folder))], "label": str(lab.relative_to(folder))}


def _write_index(folder: Path, format: str, manifest: dict, n_channels: int, channel_names) -> None:
    names = manifest["label_names"]
    uses_ignore = any(c.get("ignore_label") is not None for c in manifest["cases"])
    if format == "nnunet":
        labels = {n: i for i, n in enumerate(names)}
        if uses_ignore:
            labels["ignore"] = len(names)
        channels = {str(i): n for i, n in enumerate(channel_names or ([f"channel{i}" for i in range(n_channels)]
                                                                      if n_channels > 1 else ["image"]))}
        write_json_atomic(folder / "dataset.json", {
            "channel_names": channels, "labels": labels, "numTraining": len(manifest["cases"]),
            "file_ending": ".nii.gz", "name": folder.name,
        })
    elif format == "monai":
        write_json_atomic(folder / "datalist.json", {
            "training": [{"image": c["files"]["images"][0], "label": c["files"]["label"]} for c in manifest["cases"]],
            "labels": {str(i): n for i, n in enumerate(names)} | ({str(len(names)): "ignore"} if uses_ignore else {}),
        })
