"""The dataset layouts on disk (nnU-Net v2, MONAI, TIFF): where a case's files go, the layout's own
index file, and which layout a folder holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .manifest import read_manifest


def detect_format(folder: Path) -> str | None:
    """The layout of the dataset at ``folder`` (manifest first, then the layout's own files), or None."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is not None:
        return manifest.get("format")
    def visible(sub: str, pattern: str = "*") -> bool:  # hidden names are temporary files
        d = folder / sub
        return d.is_dir() and any(not p.name.startswith(".") for p in d.glob(pattern))

    if (folder / "dataset.json").exists() or visible("imagesTr"):
        return "nnunet"
    if (folder / "datalist.json").exists():
        return "monai"
    if visible("images", "*.tif*"):
        return "tiff"
    return None


def case_paths(folder: Path, format: str, case_id: str, n_channels: int) -> list[Path]:
    """Image file(s) then the label file of a case."""
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
            "labels": labels, "numTraining": len(manifest["cases"]), "file_ending": ".nii.gz",
            "name": folder.name, "description": "exported by napari-attnseg (see manifest.json)",
        }}
    if format == "monai":
        return {"datalist.json": {
            "training": [{"image": c["files"]["images"][0], "label": c["files"]["label"]} for c in manifest["cases"]],
            "labels": {str(i): n for i, n in enumerate(names)} | ({str(len(names)): "ignore"} if uses_ignore else {}),
        }}
    return {}

