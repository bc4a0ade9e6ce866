"""The dataset layouts on disk (nnU-Net v2, MONAI, TIFF): where a case's files go, the layout's own
index file, and which layout a folder holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from .manifest import read_manifest


def detect_format(folder: Path) -> str | None:
    """The layout of the dataset at ``folder`` (manifest first, then the layout's own files), or None: ``nnunet``
    (``dataset.json``: nnU-Net v2 or v1, the Decathlon; or ``imagesTr/``), ``monai`` (``datalist.json`` or another
    JSON file with a ``training`` list) or ``tiff`` (``images/*.tif``)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is not None:
        return manifest.get("format")
    def visible(sub: str, pattern: str = "*") -> bool:  # hidden names are temporary files
        d = folder / sub
        return d.is_dir() and any(not p.name.startswith(".") for p in d.glob(pattern))

    if (folder / "dataset.json").exists():
        return "nnunet"
    if (folder / "datalist.json").exists() or datalists(folder):
        return "monai"
    if visible("imagesTr"):
        return "nnunet"
    if visible("images", "*.tif*"):
        return "tiff"
    return None


def manifest_or_empty(folder: str | Path | None) -> dict[str, Any]:
    """The manifest of the dataset an export goes to, ``{}`` when there is none yet or it cannot be read (the export
    itself then says what is wrong with the folder): what decides before reading the images (a dataset of volumes, of
    colour pictures)."""
    try:
        return (read_manifest(Path(folder)) if folder and Path(folder).is_dir() else None) or {}
    except (DatasetError, OSError, ValueError):
        return {}


def datalists(folder: Path) -> list[Path]:
    """The JSON files at the top of ``folder`` holding a ``training`` list (MONAI datalists such as
    ``dataset_0.json``), ``manifest.json`` and hidden files aside."""
    found = []
    for p in sorted(Path(folder).glob("*.json")):
        if p.name.startswith(".") or p.name == "manifest.json" or p.stat().st_size > 2**26:
            continue
        try:
            meta = json.loads(p.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("training"), list):
            found.append(p)
    return found


def index_file(folder: Path) -> Path | None:
    """The index of a foreign dataset: ``dataset.json``, ``datalist.json`` or the one other datalist."""
    for name in ("dataset.json", "datalist.json"):
        if (folder / name).exists():
            return folder / name
    found = datalists(folder)
    if len(found) > 1:
        raise DatasetError(f"{folder} holds several datalists ({', '.join(p.name for p in found)}); rename the one to "
                           f"train on datalist.json, or give attnseg train / finetune that file (e.g. {found[0]}) "
                           "instead of the folder.")
    return found[0] if found else None


def case_paths(folder: Path, format: str, case_id: str, n_channels: int, colour: bool = False) -> list[Path]:
    """Image file(s) then the label file of a case. ``colour``: an RGB picture's colours in one TIFF (nnU-Net v2's
    natural images: ``<case>_0000.tif``, every layout's labels a TIFF too: nnU-Net takes one file ending)."""
    if colour:
        image = f"imagesTr/{case_id}_0000.tif" if format == "nnunet" else f"images/{case_id}.tif"
        return [folder / image, folder / ("labelsTr" if format == "nnunet" else "labels") / f"{case_id}.tif"]
    if format == "nnunet":
        return [*(folder / "imagesTr" / f"{case_id}_{c:04d}.nii.gz" for c in range(n_channels)),
                folder / "labelsTr" / f"{case_id}.nii.gz"]
    ext = ".nii.gz" if format == "monai" else ".tif"
    return [folder / "images" / f"{case_id}{ext}", folder / "labels" / f"{case_id}{ext}"]


def index_files(folder: Path, format: str, manifest: dict) -> dict[str, Any]:
    """The layout's own index (``dataset.json`` / ``datalist.json``) for the manifest's cases."""
    names = manifest["label_names"]
    uses_ignore = any(c.get("ignore_label") is not None for c in manifest["cases"])
    if format == "nnunet":
        # nnU-Net v2 requires the key 'background' for value 0 (LabelManager: "Background label not declared"),
        # whatever the user named it ('Background', 'bg'); the manifest keeps the user's names
        labels = {("background" if i == 0 else n): i for i, n in enumerate(names)}
        if uses_ignore:
            labels["ignore"] = len(names)
        return {"dataset.json": {
            "channel_names": {str(i): n for i, n in enumerate(manifest["channel_names"])},
            "labels": labels, "numTraining": len(manifest["cases"]),
            "file_ending": ".tif" if manifest.get("colour") else ".nii.gz",  # (a colour dataset: RGB TIFFs)
            "name": folder.name, "description": "exported by napari-attnseg (see manifest.json)",
        }}
    if format == "monai":
        return {"datalist.json": {
            "training": [{"image": c["files"]["images"][0], "label": c["files"]["label"]} for c in manifest["cases"]],
            "labels": {str(i): n for i, n in enumerate(names)} | ({str(len(names)): "ignore"} if uses_ignore else {}),
        }}
    return {}

