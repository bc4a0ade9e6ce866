"""Reading a fine-tuning dataset back (any layout the export writes, or one made elsewhere: ``foreign.py``).

API (what the trainer relies on)::

    ds = read_dataset(path)          # DatasetError with the reason when it is not a usable dataset
                                     # (path: the folder, or a datalist JSON file of it)
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
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError, InputError
from .foreign import read_foreign
from .io import read_image
from .layouts import detect_format
from .manifest import JOURNAL, MANIFEST, dataset_lock, read_manifest, recover
from .metaio import META_SUFFIXES, NRRD_SUFFIXES
from .orientation import axis_codes, volume_codes
from .volume import Volume

MAX_CHANNELS = 8  # a (C, Y, X) image file with (Y, X) labels: read as channels up to this count


@dataclass
class Case:
    """One case: its files, and lazy loaders for the image (C, *spatial) float32 and the labels."""

    case_id: str
    image_paths: list[Path]
    label_path: Path
    spacing: tuple[float, ...] | None = None
    source_name: str | None = None
    foreground: bool = False  # instance masks (a foreign masks/ folder): every value > 0 is foreground
    table_hint: str | None = None  # a foreign dataset without a label table: what to say of values beyond 1
    colour: str | None = None  # set by load(): the dtype of an RGB(A) picture (its colours became the channels)

    def _read(self, path: Path) -> Volume:
        try:
            return read_image(path)
        except InputError as exc:
            raise DatasetError(f"Case {self.case_id}: {exc}") from None

    def _image(self) -> tuple[np.ndarray, tuple[float, ...]]:
        if len(self.image_paths) == 1 and (n := _volumes(self.image_paths[0])) > 1:
            vols = [self._read_volume(self.image_paths[0], k) for k in range(n)]  # a Decathlon 4D NIfTI: channels
        else:
            vols = [self._read(p) for p in self.image_paths]
        if len(vols) == 1 and self.spacing is not None and vols[0].data.ndim == len(self.spacing) + 1 and \
                not str(vols[0].meta.get("axes") or "").endswith("S"):  # (an RGB picture: its colours last, load())
            image = np.asarray(vols[0].data, np.float32)  # a (C, y, x) TIFF holds its channels
            return image, vols[0].spacing[1:]
        shapes = {v.data.shape for v in vols}
        if len(shapes) > 1:
            raise DatasetError(f"Case {self.case_id}: its channel files differ in shape ({sorted(shapes)}).")
        self._dtype = str(vols[0].data.dtype)
        return np.stack([np.asarray(v.data, np.float32) for v in vols]), vols[0].spacing

    def _read_volume(self, path: Path, k: int) -> Volume:
        from .nifti import read_nifti

        try:
            return read_nifti(path, volume=k)
        except InputError as exc:
            raise DatasetError(f"Case {self.case_id}: {exc}") from None

    def load_image(self) -> np.ndarray:
        return self._image()[0]

    def load_labels(self) -> np.ndarray:
        from .alpha import mask_of_picture

        labels = np.asarray(mask_of_picture(self._read(self.label_path))[0].data)  # (a palette PNG: its class ids)
        if labels.dtype.kind == "f":
            if not np.all(np.mod(labels, 1) == 0):
                raise DatasetError(f"Case {self.case_id}: {self.label_path.name} holds fractional label values.")
        if self.foreground:
            return (labels > 0).astype(np.int64)
        if self.table_hint and labels.size and (labels.max() > 1 or labels.min() < 0):
            raise DatasetError(f"Case {self.case_id}: {self.label_path} holds label values {labels.min()} to "
                               f"{labels.max()}, but {self.table_hint}.")
        return labels.astype(np.int64)

    def orientation(self) -> tuple[str, ...] | None:
        """Orientation letters of the label file's array axes (a 3D NIfTI: its header only; a 3D MetaImage or
        NRRD, placed as inference places it), else None."""
        if self.label_path.name.lower().endswith(META_SUFFIXES + NRRD_SUFFIXES):
            try:
                return volume_codes(read_image(self.label_path))
            except InputError:  # unreadable here is reported when the data are loaded
                return None
        if not self.label_path.name.lower().endswith((".nii", ".nii.gz")):
            return None
        from .nifti import load_nifti  # (nibabel's unnamed pixdim-0 message kept quiet)

        try:
            img = load_nifti(self.label_path)
        except Exception:  # noqa: BLE001 - unreadable here is reported when the data are loaded
            return None
        codes = (int(img.header["qform_code"]), int(img.header["sform_code"]))
        return axis_codes(img.affine, len(img.shape)) if any(codes) else None

    def load(self) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
        image, spacing = self._image()
        labels = self.load_labels()
        image, spacing = self._channels(image, tuple(spacing), labels.shape)
        if image.shape[1:] != labels.shape:
            raise DatasetError(f"Case {self.case_id}: image {image.shape[1:]} and labels {labels.shape} differ in shape "
                               f"({self.image_paths[0].name}, {self.label_path.name}). The label file needs the image's "
                               "grid: (Y, X) labels for a (Y, X) image, an RGB picture (Y, X, 3) or a (C, Y, X) image "
                               f"of up to {MAX_CHANNELS} channels; or give each channel its own file (the nnU-Net "
                               "layout: imagesTr/<case>_0000, _0001, ... with labelsTr/<case>).")
        return image, labels, tuple(float(s) for s in spacing)

    def _channels(self, image: np.ndarray, spacing: tuple, shape: tuple[int, ...]) -> tuple[np.ndarray, tuple]:
        """One image file with one axis more than its labels: an RGB(A) picture (Y, X, 3 or 4: colours last, as
        pictures are stored) or a (C, Y, X) stack of channels; that axis becomes the channels (first)."""
        if len(self.image_paths) != 1 or image.shape[0] != 1 or image.ndim != len(shape) + 2:
            return image, spacing
        inner = image.shape[1:]
        if inner[:-1] == shape and inner[-1] in (3, 4):
            self.colour = getattr(self, "_dtype", None) or "float32"
            return np.moveaxis(image[0], -1, 0), spacing[:-1] if len(spacing) == len(inner) else spacing
        if inner[1:] == shape and inner[0] <= MAX_CHANNELS:
            return image[0], spacing[1:] if len(spacing) == len(inner) else spacing
        return image, spacing


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


SUB_FOLDERS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs", "images", "labels", "masks")  # a dataset's own folders


def read_dataset(path: str | os.PathLike) -> Dataset:
    """Open the dataset at ``path`` (nnU-Net raw, MONAI datalist or TIFF pairs, detected; or a datalist file)."""
    root, index = Path(path), None
    if root.is_file() and root.suffix.lower() == ".json" and root.name != MANIFEST:
        root, index = root.parent, root
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; pass the folder the export wrote.")
    if (root / JOURNAL).exists():  # an export was killed after its commit point: finish it
        if not os.access(root, os.W_OK):
            raise DatasetError(f"{root}: an export was interrupted; open the dataset once with write access "
                               "(or run any export into it) to finish it.")
        with dataset_lock(root):
            recover(root)
    fmt = detect_format(root)
    if index is not None and read_manifest(root) is None:  # a datalist file passed: the layout it describes
        fmt = "nnunet" if index.name == "dataset.json" else "monai"
    here = Path(os.path.abspath(root))  # ('.' in DS/imagesTr: its name)
    if fmt is None and here.name in SUB_FOLDERS and detect_format(here.parent) is not None:  # (DS/imagesTr given)
        above = root.parent if root.name == here.name else here.parent
        raise DatasetError(f"{root} is the {here.name}/ folder of a dataset, not a dataset; give the dataset folder "
                           f"{above} (the folder above {here.name}).")
    if fmt is None:
        raise DatasetError(f"{root} is not a dataset (no manifest.json, dataset.json or datalist.json, no nnU-Net "
                           "imagesTr/ or images/ of TIFF files); export one first.")
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
    else:
        digest, names, ignore, entries = read_foreign(root, fmt, index)
        cases = [Case(**e) for e in entries]
    if not cases:
        raise DatasetError(f"{root} holds no cases.")
    for case in cases:
        if missing := [p for p in [*case.image_paths, case.label_path] if not p.exists()]:
            cid = case.case_id
            again = (f" export it again into that case (attnseg export --case-id {cid} --overwrite; napari: Case id {cid} "
                     "and 'Replace the case'), or" if manifest is not None else "")
            raise DatasetError(f"Case {case.case_id}: {', '.join(map(str, missing))} {'is' if len(missing) == 1 else 'are'} "
                               f"missing from the dataset {root}, which still lists the case (files deleted by hand?). "
                               f"Put {'it' if len(missing) == 1 else 'them'} back,{again} take the case out ("
                               + (f"attnseg dataset {shlex.quote(str(root))} --remove {shlex.quote(str(cid))}" if manifest is not None else
                                  "remove its entry from its list of cases") + ").")
    return Dataset(root, fmt, cases, names, ignore, digest)


def _volumes(path: Path) -> int:
    """The number of volumes of a 4D NIfTI (the Decathlon stores a case's modalities so), else 1."""
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return 1
    from .nifti import nifti_volumes  # ((x, y, z, n, 1) holds n volumes too)

    try:
        return nifti_volumes(path)
    except Exception:  # noqa: BLE001 - unreadable here is reported when the data are loaded
        return 1
