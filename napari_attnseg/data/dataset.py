"""Reading a fine-tuning dataset back (any layout the export writes) for the trainer."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError, InputError
from .export import MANIFEST, detect_format
from .io import read_image


@dataclass
class Case:
    """One case of a dataset; ``load()`` reads image (C, *spatial) float32 and labels."""

    case_id: str
    image_paths: list[Path]
    label_path: Path

    def load(self) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
        try:
            vols = [read_image(p) for p in self.image_paths]
            lab = read_image(self.label_path)
        except InputError as exc:
            raise DatasetError(f"Case {self.case_id}: {exc}") from None
        image = np.stack([np.asarray(v.data, np.float32) for v in vols])
        labels = np.asarray(lab.data)
        if image.shape[1:] != labels.shape:
            raise DatasetError(f"Case {self.case_id}: image {image.shape[1:]} and labels {labels.shape} differ in shape "
                               f"({self.image_paths[0].name}, {self.label_path.name}).")
        if labels.dtype.kind == "f":
            labels = labels.astype(np.int64)
        return image, labels.astype(np.int64), vols[0].spacing


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


def read_dataset(path) -> Dataset:
    """Open the dataset at ``path`` (nnU-Net raw, MONAI datalist or TIFF pairs, detected)."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; pass the folder the export wrote.")
    fmt = detect_format(root)
    if fmt is None:
        raise DatasetError(f"{root} is not a dataset (no manifest.json, dataset.json or datalist.json); export one first.")
    manifest_path = root / MANIFEST
    index_path = manifest_path if manifest_path.exists() else (root / "dataset.json" if fmt == "nnunet" else root / "datalist.json")
    raw = index_path.read_bytes() if index_path.exists() else b""
    digest = hashlib.sha256(raw).hexdigest()
    cases: list[Case] = []
    ignore = None
    if manifest_path.exists():
        manifest = json.loads(raw)
        names = list(manifest["label_names"])
        for c in manifest["cases"]:
            cases.append(Case(c["case_id"], [root / p for p in c["files"]["images"]], root / c["files"]["label"]))
            if c.get("ignore_label") is not None:
                ignore = int(c["ignore_label"])
    elif fmt == "nnunet":
        meta = json.loads((root / "dataset.json").read_text())
        labels = dict(meta.get("labels", {}))
        ignore = labels.pop("ignore", None)
        names = [n for n, _ in sorted(labels.items(), key=lambda kv: int(kv[1]) if not isinstance(kv[1], list) else kv[1][0])]
        ending = meta.get("file_ending", ".nii.gz")
        n_ch = len(meta.get("channel_names", {"0": "image"}))
        for lab in sorted((root / "labelsTr").glob(f"*{ending}")):
            cid = lab.name[: -len(ending)]
            cases.append(Case(cid, [root / "imagesTr" / f"{cid}_{i:04d}{ending}" for i in range(n_ch)], lab))
    else:
        meta = json.loads((root / "datalist.json").read_text())
        names = [v for _, v in sorted(meta.get("labels", {"0": "background", "1": "foreground"}).items(), key=lambda kv: int(kv[0]))]
        if "ignore" in names:
            ignore = names.index("ignore")
            names = names[:ignore]
        for i, item in enumerate(meta.get("training", [])):
            cases.append(Case(f"case_{i:04d}", [root / item["image"]], root / item["label"]))
    if not cases:
        raise DatasetError(f"{root} holds no cases.")
    for case in cases:
        for p in [*case.image_paths, case.label_path]:
            if not p.exists():
                raise DatasetError(f"Case {case.case_id}: file {p} is missing from the dataset.")
    return Dataset(root, fmt, cases, names, ignore, digest)
