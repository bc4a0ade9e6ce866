"""File > Open (or drag and drop) of a DICOM RTSTRUCT or SEG: its ROIs/segments as a Labels layer '<image> <file stem>'
on the grid and placement of the open image it was drawn on (:func:`~napari_attnseg.data.labels_in.read_labels`).

That image is the open image layer read from the DICOM series the file references, else from DICOM files of the same
FrameOfReferenceUID (the selected one first); without one, the only 3D image layer placed in patient millimetres (a
NIfTI converted from the series), with a note. The layer follows a placement (pixel size, position) set on that image
later, as a record's layers do (:func:`.record_reader.follow_when_added`).
Class names (ROIName / SegmentLabel, background first) go to the layer's ``class_names``, where the Correct tab reads
them; a SEG's reviewed-slice marks (napari's Save mask kept them) to ``reviewed_slices``, and the model that made its
segments to its provenance (``attnseg``), as a mask file reopened with its model. Neither file carries its image's
grid: with no image open the reader says to open the series first (naming an RTSTRUCT's ROIs, a SEG's segments).
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


def referenced_series(path: Path) -> set[str]:
    """The SeriesInstanceUIDs of the images an RTSTRUCT (ReferencedFrameOfReferenceSequence > RTReferencedStudySequence
    > RTReferencedSeriesSequence) or a SEG (ReferencedSeriesSequence) was drawn on; empty when it names none."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - its reader names an unreadable file
        return set()
    items = [series for ref in ds.get("ReferencedFrameOfReferenceSequence") or []
             for study in ref.get("RTReferencedStudySequence") or []
             for series in study.get("RTReferencedSeriesSequence") or []]
    items += list(ds.get("ReferencedSeriesSequence") or [])
    return {str(item.SeriesInstanceUID) for item in items if item.get("SeriesInstanceUID")}


def _series_of(layer) -> str | None:
    """The SeriesInstanceUID of the DICOM files ``layer`` was read from (the layer's metadata keeps its file or
    folder, not its series): its file's, or the first image file's of its folder (headers only; reading every file
    of a 300-slice folder took ~1 s), as its FrameOfReferenceUID is read. None for an image read from no DICOM."""
    import pydicom

    from ..data.dicom import _is_image, is_dicom_file
    from ..data.dicom_labels import _image_files

    if layer.metadata.get("series_uid"):  # (a reader that keeps it on the layer)
        return str(layer.metadata["series_uid"])
    for f in _image_files(_volume_of(layer))[0] if layer.metadata.get("format") == "dicom" else ():
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True, force=True,
                                 specific_tags=["SeriesInstanceUID", "Modality", "Rows", "Columns", "BitsAllocated"]
                                 ) if is_dicom_file(f) else None
        except Exception:  # noqa: BLE001 - the image reader read what it could
            continue
        if ds is not None and _is_image(ds) and ds.get("SeriesInstanceUID"):  # (not an RS, SEG or dose beside it)
            return str(ds.SeriesInstanceUID)
    return None


def _image_for(path: Path, kind: str, viewer) -> tuple[object, str | None]:
    """The image layer the segmentation ``path`` was drawn on, and a note when it was guessed: the open image of the
    series it references (a PET and a CT, two reconstructions of one CT, share a frame of reference), else of its
    FrameOfReferenceUID (the selected, else the newest, with a note when several share it), else the only 3D one."""
    from ..data.dicom_labels import image_frame_of_reference
    from ..data.labels_in import frames_of_reference

    what = f"{path.name} (a DICOM {kind})"
    images = _placed_images(viewer)
    if not images:
        held, parts = ("segments of the CT/MR series it was drawn on", "segments") if kind == "SEG" else \
            ("contours placed in patient millimetres, not an image", "ROIs")
        raise InputError(f"{what} holds {held}, and no image placed in space is open: open the CT/MR series it was "
                         "drawn on first (File > Open Folder: its DICOM folder), then open this file again; its "
                         f"{parts} open as a Labels layer on that image.")
    refs = referenced_series(path)
    for layer in images if refs else ():
        if _series_of(layer) in refs:
            return layer, None
    uids, others, same = frames_of_reference(path), [], []
    for layer in images:
        uid = image_frame_of_reference(_volume_of(layer)) if layer.metadata.get("format") == "dicom" else None
        if uid is not None and uid in uids:
            same.append(layer)
        others.append(layer.name if uid is None else f"{layer.name} (FrameOfReferenceUID {uid})")
    if same:
        return same[0], None if len(same) == 1 else (
            f"{', '.join(ly.name for ly in same)} share its FrameOfReferenceUID and none is the series it references, "
            f"so it was drawn on {same[0].name} (the selected, else the newest): select the scan it was drawn on and "
            "open it again if this is not that scan")
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
    from .record_reader import follow_when_added

    file, kind = dicom_labels_file(path) or (Path(path), "RTSTRUCT")
    viewer = _viewer()
    layer, note = _image_for(file, kind, viewer)
    labels = read_labels(file, _volume_of(layer))
    names = list(labels.meta.get("class_names") or [])
    md = layer.metadata
    meta = {"source_path": str(path), "format": labels.meta.get("format"), "class_names": names,
            "spacing": list(md.get("spacing") or layer.scale), "affine": md["affine"]}
    if md.get("nifti"):
        meta["nifti"] = md["nifti"]  # (Save as NIfTI: the image's header codes)
    if model := labels.meta.get("model_info"):  # the model that made its segments: the panels' provenance (the
        meta["attnseg"] = {"model": model.get("model"), "checkpoint": model.get("checkpoint"),  # export's manifest,
                           "checkpoint_sha256": model.get("weights_sha256")}  # the Fine-tune tab's start model)
    if (reviewed := labels.meta.get("reviewed_slices")) is not None:  # (marks Save mask kept in the SEG: the
        meta["reviewed_slices"] = list(reviewed)  # Correct tab exports those slices, and saves them again)
    name = f"{layer.name} {stem(str(file))}"
    kwargs = {"name": name, "scale": tuple(layer.scale), "translate": tuple(layer.translate), "metadata": meta,
              "features": {"class": names}, "units": tuple(str(u) for u in layer.units)}
    follow_when_added(viewer, kwargs, layer)  # (a pixel size or position typed on the image later moves it too)
    classes = ", ".join(f"{v} {n}" for v, n in enumerate(names) if v)
    marks = ""
    if reviewed is not None:
        from ..correct import format_slice_ranges

        marks = f"; slices {format_slice_ranges(reviewed)} marked reviewed, as saved in the file"
    notes = [n for n in (note, labels.meta.get("warning")) if n]
    _notify(f"{name}: classes {classes} from {file.name}, drawn on {layer.name}{marks}"
            + "".join(f"; {n}" for n in notes), info=not notes)
    return [(labels.data, kwargs, "labels")]
