"""Reading a fine-tuning dataset back (any layout the export writes, or a plain nnU-Net raw folder).

API (what the trainer relies on)::

    ds = read_dataset(path)          # DatasetError with the reason when it is not a usable dataset
    ds.format                        # "nnunet" | "monai" | "tiff"
    ds.label_names                   # ["background", ...]: index = label value
    ds.ignore_label                  # the 'ignore' value (= len(label_names)) or None
    ds.manifest_sha256               # sha256 of manifest.json (or of the layout's index), for cards
    for case in ds.cases:
        case.case_id, case.spacing   # spacing from the manifest (None for foreign datasets until loaded)
        image = case.load_image()    # (C, *spatial) float32
        labels = case.load_labels()  # (*spatial) int64
        image, labels, spacing = case.load()   # both plus the spacing read from the image file

Loading is lazy: nothing but the index is read until a case is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError, InputError
from .io import read_image
from .layouts import detect_format
from .manifest import JOURNAL, MANIFEST, dataset_lock, read_manifest, recover
from .orientation import axis_codes
from .volume import Volume


@dataclass
class Case:
    """One case: its files, and lazy loaders for the image (C, *spatial) float32 and the labels."""

    case_id: str
    image_paths: list[Path]
    label_path: Path
    spacing: tuple[float, ...] | None = None
    source_name: str | None = None

    def _read(self, path: Path) -> Volume:
        try:
            return read_image(path)
        except InputError as exc:
            raise DatasetError(f"Case {self.case_id}: {exc}") from None

    def _image(self) -> tuple[np.ndarray, tuple[float, ...]]:
        vols = [self._read(p) for p in self.image_paths]
        if len(vols) == 1 and self.spacing is not None and vols[0].data.ndim == len(self.spacing) + 1:
            image = np.asarray(vols[0].data, np.float32)  # a (C, y, x) TIFF holds its channels
            return image, vols[0].spacing[1:]
        shapes = {v.data.shape for v in vols}
        if len(shapes) > 1:
            raise DatasetError(f"Case {self.case_id}: its channel files differ in shape ({sorted(shapes)}).")
        return np.stack([np.asarray(v.data, np.float32) for v in vols]), vols[0].spacing

    def load_image(self) -> np.ndarray:
        return self._image()[0]

    def load_labels(self) -> np.ndarray:
        labels = np.asarray(self._read(self.label_path).data)
        if labels.dtype.kind == "f":
            if not np.all(np.mod(labels, 1) == 0):
                raise DatasetError(f"Case {self.case_id}: {self.label_path.name} holds fractional label values.")
        return labels.astype(np.int64)

    def orientation(self) -> tuple[str, ...] | None:
        """Orientation letters of the label file's array axes (a 3D NIfTI; its header only), else None."""
        if not self.label_path.name.lower().endswith((".nii", ".nii.gz")):
            return None
        import nibabel as nib

        try:
            img = nib.load(str(self.label_path))
        except Exception:  # noqa: BLE001 - unreadable here is reported when the data are loaded
            return None
        codes = (int(img.header["qform_code"]), int(img.header["sform_code"]))
        return axis_codes(img.affine, len(img.shape)) if any(codes) else None

    def load(self) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
        image, spacing = self._image()
        labels = self.load_labels()
        if image.shape[1:] != labels.shape:
            raise DatasetError(f"Case {self.case_id}: image {image.shape[1:]} and labels {labels.shape} differ in shape "
                               f"({self.image_paths[0].name}, {self.label_path.name}).")
        return image, labels, tuple(float(s) for s in spacing)


@dataclass
class Dataset:
    root: Path
    format: str
    cases: list[Case]
    label_names: list[str]
    ignore_label: int | None
    manifest_sha256: str

    @property
    def num_classes(self) -> int:
        return len(self.label_names)


def read_dataset(path: str | os.PathLike) -> Dataset:
    """Open the dataset at ``path`` (nnU-Net raw, MONAI datalist or TIFF pairs, detected)."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; pass the folder the export wrote.")
    if (root / JOURNAL).exists():  # an export was killed after its commit point: finish it
        if not os.access(root, os.W_OK):
            raise DatasetError(f"{root}: an export was interrupted; open the dataset once with write access "
                               "(or run any export into it) to finish it.")
        with dataset_lock(root):
            recover(root)
    fmt = detect_format(root)
    if fmt is None:
        raise DatasetError(f"{root} is not a dataset (no manifest.json, dataset.json or datalist.json); export one first.")
    manifest = read_manifest(root)
    if manifest is not None:
        digest = hashlib.sha256((root / MANIFEST).read_bytes()).hexdigest()
        names = list(manifest["label_names"])
        cases, ignore = [], None
        for c in manifest["cases"]:
            cases.append(Case(c["case_id"], [root / p for p in c["files"]["images"]], root / c["files"]["label"],
                              tuple(c["spacing"]) if c.get("spacing") else None, c.get("source_name")))
            if c.get("ignore_label") is not None:
                ignore = int(c["ignore_label"])
    elif fmt == "nnunet":
        digest, names, ignore, cases = _foreign_nnunet(root)
    elif fmt == "monai":
        digest, names, ignore, cases = _foreign_monai(root)
    else:
        digest, names, ignore, cases = _foreign_tiff(root)
    if not cases:
        raise DatasetError(f"{root} holds no cases.")
    for case in cases:
        for p in [*case.image_paths, case.label_path]:
            if not p.exists():
                raise DatasetError(f"Case {case.case_id}: file {p} is missing from the dataset.")
    return Dataset(root, fmt, cases, names, ignore, digest)


def _json(path: Path) -> tuple[dict, str]:
    raw = path.read_bytes()
    try:
        return json.loads(raw), hashlib.sha256(raw).hexdigest()
    except ValueError:
        raise DatasetError(f"{path} is not valid JSON.") from None


def _foreign_nnunet(root: Path):
    if not (root / "dataset.json").exists():
        raise DatasetError(f"{root}: nnU-Net dataset without dataset.json.")
    meta, digest = _json(root / "dataset.json")
    labels = dict(meta.get("labels", {}))
    ignore = labels.pop("ignore", None)
    if isinstance(ignore, list):
        raise DatasetError(f"{root}: region-based nnU-Net labels are not supported.")
    names = [n for n, _ in sorted(labels.items(), key=lambda kv: kv[1][0] if isinstance(kv[1], list) else int(kv[1]))]
    ending = meta.get("file_ending", ".nii.gz")
    n_ch = len(meta.get("channel_names", {"0": "image"}))
    cases = []
    for lab in sorted((root / "labelsTr").glob(f"*{ending}")):
        if lab.name.startswith("."):
            continue
        cid = lab.name[: -len(ending)]
        cases.append(Case(cid, [root / "imagesTr" / f"{cid}_{i:04d}{ending}" for i in range(n_ch)], lab))
    return digest, names, None if ignore is None else int(ignore), cases


def _foreign_monai(root: Path):
    meta, digest = _json(root / "datalist.json")
    table = meta.get("labels", {"0": "background", "1": "foreground"})
    names = [v for _, v in sorted(table.items(), key=lambda kv: int(kv[0]))]
    ignore = None
    if "ignore" in names:
        ignore = names.index("ignore")
        names = names[:ignore]
    cases = []
    for i, item in enumerate(meta.get("training", [])):
        img = item["image"][0] if isinstance(item["image"], list) else item["image"]
        cases.append(Case(f"case_{i:04d}", [root / img], root / item["label"]))
    return digest, names, ignore, cases


def _foreign_tiff(root: Path):
    cases, h = [], hashlib.sha256()
    for img in sorted((root / "images").glob("*.tif*")):
        if img.name.startswith("."):
            continue
        h.update(img.name.encode())
        cases.append(Case(img.name.split(".")[0], [img], root / "labels" / img.name))
    return h.hexdigest(), ["background", "foreground"], None, cases
