"""Datasets made elsewhere (no ``manifest.json``): where each case's files are and what the label values mean.

- nnU-Net v2 raw (``dataset.json`` with ``channel_names`` / ``file_ending``): ``labelsTr/<case><ending>`` with
  ``imagesTr/<case>_0000<ending>``, ``_0001``... (one per ``channel_names``; or the ``dataset`` table of files);
- nnU-Net v1 task folders and the Medical Segmentation Decathlon (``dataset.json`` with a ``training`` list of
  ``{"image", "label"}``): the files named there (one 4D NIfTI of the modalities is read as channels), or their
  nnU-Net v1 ``_0000``... channel files;
- MONAI datalists (``datalist.json``, or the one other JSON file of the folder with a ``training`` list, e.g.
  ``dataset_0.json``): the ``training`` and ``validation`` entries (``image`` a file or a list of channel
  files), paths relative to the JSON's folder;
- TIFF folders (``images/`` with ``labels/``: class values, read as they are, or ``masks/``: instance masks as
  Cellpose and StarDist keep them, any value > 0 is foreground), matched by name (Cellpose's ``<name>_masks.tif``).

``imagesTs`` and ``test`` lists are never read; hidden files (macOS ``._x.nii.gz``, ``.DS_Store``) are skipped.
Each reader returns (index digest, label names, ignore value, case entries): keyword arguments of ``Case``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import DatasetError

BINARY = ["background", "foreground"]
SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".tiff", ".tif")
MASK_SUFFIXES = ("", "_masks", "_mask", "_labels", "_label", "_seg")  # Cellpose: x_masks.tif
Read = tuple[str, list[str], int | None, list[dict[str, Any]]]


def read_json(path: Path) -> tuple[dict, str]:
    raw = path.read_bytes()
    try:
        meta = json.loads(raw)
    except ValueError:
        raise DatasetError(f"{path} is not valid JSON.") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path} is not a dataset description (a JSON object with a \"training\" list).")
    return meta, hashlib.sha256(raw).hexdigest()


def strip_suffix(name: str) -> str:
    """``name`` without its image suffix (``x.nii.gz`` -> ``x``)."""
    low = name.lower()
    return next((name[: -len(s)] for s in SUFFIXES if low.endswith(s)), name.rsplit(".", 1)[0])


def label_table(table: Any, index: Path) -> tuple[list[str], int | None]:
    """Label names by value and the 'ignore' value, from ``labels`` as nnU-Net v2 (``{"background": 0}``) or the
    Decathlon / nnU-Net v1 / MONAI (``{"0": "background"}``) write it."""
    if not isinstance(table, dict) or not table:
        raise DatasetError(f"{index}: \"labels\" should map each label value to its name, e.g. "
                           "{\"0\": \"background\", \"1\": \"tumour\"}.")
    by_value: dict[int, str] = {}
    for key, value in table.items():
        if isinstance(value, list):
            raise DatasetError(f"{index}: region-based labels ({key}: {value}) are not supported; give each label "
                               "value its own name, e.g. \"labels\": {\"background\": 0, \"edema\": 1, ...}.")
        number, name = (key, value) if str(key).strip().lstrip("-").isdigit() else (value, key)
        try:
            by_value[int(number)] = str(name)
        except (TypeError, ValueError):
            raise DatasetError(f"{index}: the label {key!r}: {value!r} has no integer value.") from None
    ignore = next((v for v, n in by_value.items() if n.lower() == "ignore"), None)
    values = sorted(v for v in by_value if v != ignore)
    if values != list(range(len(values))) or len(values) < 2 or (ignore is not None and ignore < len(values)):
        raise DatasetError(f"{index}: the label values {sorted(by_value)} should be 0 (background), 1, ..., n-1 "
                           "without a gap (and 'ignore' after them), as nnU-Net requires; number them so.")
    return [by_value[v] for v in values], ignore


def _table(meta: dict, index: Path) -> tuple[list[str], int | None, str | None]:
    """Names, ignore value and, when the index has no table, what to tell about label values beyond 1."""
    if "labels" in meta:
        return (*label_table(meta["labels"], index), None)
    return BINARY, None, (f"{index.name} has no \"labels\" table, so its label files are read as background (0) and "
                          "foreground (1); add one naming every value, e.g. \"labels\": {\"0\": \"background\", "
                          "\"1\": \"liver\", \"2\": \"tumour\"}")


def _case_ids(labels: list[Path], root: Path) -> list[str]:
    """Label file names without suffix; relative paths where two share a name (BraTS-style case folders)."""
    ids = [strip_suffix(p.name) for p in labels]
    if len(set(ids)) == len(ids):
        return ids
    out = []
    for p in labels:
        try:
            out.append(strip_suffix(p.relative_to(root).as_posix()).replace("/", "_"))
        except ValueError:
            out.append(strip_suffix(p.as_posix().lstrip("/")).replace("/", "_"))
    return out


def read_nnunet_v2(root: Path, index: Path, meta: dict, digest: str) -> Read:
    names, ignore, hint = _table(meta, index)
    ending = str(meta.get("file_ending", ".nii.gz"))
    n_ch = len(meta.get("channel_names") or {"0": "image"})
    if isinstance(meta.get("dataset"), dict):  # nnU-Net v2's explicit table of files
        found = []
        for cid, entry in meta["dataset"].items():
            if not isinstance(entry, dict) or "label" not in entry or not isinstance(entry.get("images"), list):
                raise DatasetError(f"{index}: \"dataset\" entry {cid!r} needs \"images\" (a list) and \"label\".")
            found.append((str(cid), [root / str(p) for p in entry["images"]], root / str(entry["label"])))
        return digest, names, ignore, [_entry(cid, imgs, lab, hint) for cid, imgs, lab in found]
    labels = sorted(p for p in (root / "labelsTr").glob(f"*{ending}") if not p.name.startswith("."))
    if not labels:
        raise DatasetError(f"{root}: no label files labelsTr/*{ending} (the \"file_ending\" of {index.name}); put each "
                           f"case's label file there, or set \"file_ending\" to the files' ending.")
    cases = []
    for lab in labels:
        cid = lab.name[: -len(ending)]
        images = [root / "imagesTr" / f"{cid}_{i:04d}{ending}" for i in range(n_ch)]
        missing = [p for p in images if not p.exists()]
        if missing:
            plain = root / "imagesTr" / f"{cid}{ending}"
            how = (f"nnU-Net v2 names the channels {cid}_0000{ending}, {cid}_0001{ending}, ... (one per "
                   f"\"channel_names\" of {index.name}); rename {plain.name} to {cid}_0000{ending}" if plain.exists()
                   else f"add it, or move {lab.name} out of labelsTr")
            raise DatasetError(f"Case {cid} of {root}: its image {missing[0].relative_to(root)} is missing; {how}.")
        cases.append(_entry(cid, images, lab, hint))
    return digest, names, ignore, cases


def read_pairs(root: Path, index: Path, meta: dict, digest: str) -> Read:
    """A ``training`` (and ``validation``) list of {"image", "label"}: the Decathlon, nnU-Net v1 and MONAI datalists."""
    names, ignore, hint = _table(meta, index)
    base = index.parent
    n_modalities = len(meta.get("modality") or {}) or None
    found: dict[Path, list[Path]] = {}
    for key in ("training", "validation"):
        items = meta.get(key) or []
        if not isinstance(items, list):
            raise DatasetError(f"{index}: \"{key}\" should be a list of {{\"image\": ..., \"label\": ...}}.")
        for i, item in enumerate(items):
            where = f"entry {i} of \"{key}\" in {index}"
            if not isinstance(item, dict) or not item.get("image") or not item.get("label"):
                raise DatasetError(f"{where} needs an \"image\" and a \"label\" (an image without labels cannot be "
                                   "trained on); remove it or add its label file.")
            given = item["image"] if isinstance(item["image"], list) else [item["image"]]
            if any(Path(str(f)).name.startswith("._") for f in [*given, item["label"]]):
                continue  # a macOS AppleDouble file a glob picked up: never an image
            label = _existing(base / str(item["label"]), where, base)
            if label in found:
                continue
            found[label] = [p for g in given for p in _channels(base / str(g), n_modalities, where, base)]
    if not found:
        raise DatasetError(f"{index} lists no training cases (\"training\": [{{\"image\": ..., \"label\": ...}}, ...]).")
    labels = list(found)
    return digest, names, ignore, [_entry(cid, found[lab], lab, hint)
                                   for cid, lab in zip(_case_ids(labels, base), labels)]


def _existing(path: Path, where: str, base: Path) -> Path:
    if not path.exists():
        raise DatasetError(f"{where} names {path}, which does not exist; its paths are read relative to {base} "
                           "(or absolute): correct the entry or add the file.")
    return path


def _channels(path: Path, n_modalities: int | None, where: str, base: Path) -> list[Path]:
    """The image as named, or its nnU-Net v1 channel files ``<case>_0000<ext>``... (v1 lists the case's name)."""
    if path.exists():
        return [path]
    stem, ext = strip_suffix(path.name), path.name[len(strip_suffix(path.name)):]
    first = path.with_name(f"{stem}_0000{ext}")
    if not first.exists():
        return [_existing(path, where, base)]
    n = n_modalities or 1
    if n_modalities is None:
        while path.with_name(f"{stem}_{n:04d}{ext}").exists():
            n += 1
    return [_existing(path.with_name(f"{stem}_{c:04d}{ext}"), where, base) for c in range(n)]


def read_tiff_folder(root: Path) -> Read:
    """``images/`` with ``labels/`` (class values) or ``masks/`` (instance ids: foreground), matched by name."""
    sub = "labels" if (root / "labels").is_dir() else "masks"
    if not (root / sub).is_dir():
        raise DatasetError(f"{root}: images/ has no labels/ (or masks/) folder beside it; put each image's label file "
                           "there under the image's name.")
    images = sorted(p for p in (root / "images").glob("*.tif*") if not p.name.startswith("."))
    cases, lost, h = [], [], hashlib.sha256()
    for img in images:
        stem = strip_suffix(img.name)
        found = next((p for s in MASK_SUFFIXES for ext in (".tif", ".tiff")
                      if (p := root / sub / f"{stem}{s}{ext}").exists()), None)
        if found is None:
            lost.append(img.name)
            continue
        h.update(img.name.encode())
        cases.append(_entry(stem, [img], found, None, foreground=sub == "masks"))  # labels/: values as they are
    if lost:
        raise DatasetError(f"{root}: {len(lost)} image(s) in images/ have no file of the same name in {sub}/ "
                           f"({', '.join(lost[:3])}{', ...' if len(lost) > 3 else ''}); add their masks, or move "
                           "those images out of images/.")
    return h.hexdigest(), BINARY, None, cases


def _entry(cid: str, images: list[Path], label: Path, hint: str | None, foreground: bool = False) -> dict:
    return {"case_id": cid, "image_paths": images, "label_path": label, "table_hint": hint, "foreground": foreground}


def read_foreign(root: Path, fmt: str, index: Path | None = None) -> Read:
    """The cases of the foreign dataset at ``root`` (``fmt`` from ``detect_format``; ``index``: a JSON chosen)."""
    if fmt == "tiff":
        return read_tiff_folder(root)
    from .layouts import index_file

    index = index or index_file(root)
    if index is None:
        raise DatasetError(f"{root}: an nnU-Net folder (imagesTr/) without dataset.json; add the dataset.json nnU-Net "
                           "needs (\"channel_names\", \"labels\", \"file_ending\").")
    meta, digest = read_json(index)
    if "training" in meta and not ("channel_names" in meta or "file_ending" in meta):
        return read_pairs(root, index, meta, digest)
    if fmt == "nnunet" or "channel_names" in meta:
        return read_nnunet_v2(root, index, meta, digest)
    raise DatasetError(f"{index} has no \"training\" list of {{\"image\": ..., \"label\": ...}}; it is not a datalist.")
