"""File > Open (or drag and drop) of a DICOM RTSTRUCT or SEG: its ROIs/segments as a Labels layer '<image> <file stem>'
on the grid and placement of the open image it was drawn on (:func:`~napari_attnseg.data.labels_in.read_labels`).

That image is the open image layer read from DICOM files of the same FrameOfReferenceUID (the selected one first);
without one, the only 3D image layer placed in patient millimetres (a NIfTI converted from the series), with a note.
Class names (ROIName / SegmentLabel, background first) go to the layer's ``class_names``, where the Correct tab reads
them. An RTSTRUCT carries no image of its own: with no image open the reader says to open the series first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.io import stem
from ..data.volume import Volume
from ..errors import InputError


def get_labels_reader(path):
    """A reader for an RTSTRUCT/SEG file (or the folder holding only it), else None (never raises)."""
    from ..data.labels_in import dicom_labels_file

    if isinstance(path, list) or dicom_labels_file(path) is None:
        return None
    return read_dicom_labels


def _volume_of(layer) -> Volume:
    """The image layer as the :class:`Volume` it was read as (grid, placement, DICOM source), without copying it."""
    md = layer.metadata
    meta = {k: md[k] for k in ("source_path", "format", "nifti") if md.get(k) is not None}
    spacing = tuple(float(s) for s in md.get("spacing") or layer.scale)
    return Volume(layer.data, spacing, np.asarray(md["affine"], float), meta)


def _placed_images(viewer) -> list:
    """Open 2D/3D grey image layers placed in patient millimetres (an affine from NIfTI/DICOM): selected, then newest."""
    from .io_hooks import _candidate_layers

    return [ly for ly in _candidate_layers(viewer) if ly.metadata.get("affine") is not None and not ly.rgb
            and np.ndim(ly.data) in (2, 3)]


def _image_for(path: Path, kind: str, viewer) -> tuple[object, str | None]:
    """The image layer the segmentation ``path`` was drawn on, and a note when it was guessed."""
    from ..data.dicom_labels import image_frame_of_reference
    from ..data.labels_in import frames_of_reference

    what = f"{path.name} (a DICOM {kind})"
    images = _placed_images(viewer)
    if not images:
        raise InputError(f"{what} holds contours placed in patient millimetres, not an image, and no image placed in "
                         "space is open: open the CT/MR series it was drawn on first (File > Open Folder: its DICOM "
                         "folder), then open this file again; its ROIs open as a Labels layer on that image.")
    uids, others = frames_of_reference(path), []
    for layer in images:
        uid = image_frame_of_reference(_volume_of(layer)) if layer.metadata.get("format") == "dicom" else None
        if uid is not None and uid in uids:
            return layer, None
        others.append(layer.name if uid is None else f"{layer.name} (FrameOfReferenceUID {uid})")
    three_d = [ly for ly in images if np.ndim(ly.data) == 3]
    if len(three_d) == 1 and not (uids and three_d[0].metadata.get("format") == "dicom"):
        return three_d[0], (f"no open DICOM image shares its FrameOfReferenceUID, so it was drawn onto {three_d[0].name}, "
                            "the only 3D image open: check that this is the scan it was drawn on")
    raise InputError(f"{what}: none of the open images is the scan it was drawn on (its FrameOfReferenceUID "
                     f"{', '.join(sorted(uids)) or 'is missing'}; open: {'; '.join(others)}): open that CT/MR series "
                     "(its DICOM folder) first, then open this file again.")


def read_dicom_labels(path) -> list[tuple]:
    """The RTSTRUCT/SEG ``path`` as a Labels layer on its image (see the module docstring)."""
    from ..data.labels_in import dicom_labels_file, read_labels
    from .io_hooks import _notify, _viewer

    file, kind = dicom_labels_file(path) or (Path(path), "RTSTRUCT")
    layer, note = _image_for(file, kind, _viewer())
    labels = read_labels(file, _volume_of(layer))
    names = list(labels.meta.get("class_names") or [])
    md = layer.metadata
    meta = {"source_path": str(path), "format": labels.meta.get("format"), "class_names": names,
            "spacing": list(md.get("spacing") or layer.scale), "affine": md["affine"]}
    if md.get("nifti"):
        meta["nifti"] = md["nifti"]  # (Save as NIfTI: the image's header codes)
    name = f"{layer.name} {stem(str(file))}"
    kwargs = {"name": name, "scale": tuple(layer.scale), "translate": tuple(layer.translate), "metadata": meta,
              "features": {"class": names}, "units": tuple(str(u) for u in layer.units)}
    classes = ", ".join(f"{v} {n}" for v, n in enumerate(names) if v)
    notes = [n for n in (note, labels.meta.get("warning")) if n]
    _notify(f"{name}: classes {classes} from {file.name}, drawn on {layer.name}" + "".join(f"; {n}" for n in notes),
            info=not notes)
    return [(labels.data, kwargs, "labels")]
