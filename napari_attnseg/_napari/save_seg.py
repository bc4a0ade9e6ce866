"""*Save mask...* as a DICOM SEG: a clinician's corrected mask back to the PACS, on the DICOM series it was drawn on.

The dialog offers "DICOM SEG (*.dcm)" when the mask's image (the Correct tab's image) was read from a DICOM series
by this plugin's reader (its layer keeps the series' file or folder, ``source_path``, and ``format`` 'dicom'). That
layer holds the reader's own array (:func:`~..data.dicom.read_dicom_series`, slices in its order): napari places it
by scale and translate, never flipped nor reoriented (only a NIfTI is reoriented onto an open image, marked
``reoriented_from``, refused here), so the mask's voxels are on the order
:func:`~..data.dicom_seg_write.write_dicom_seg` maps to the series' instances; its check of the image's affine
refuses a series that no longer reads as the image did.

The SEG is AUTOMATIC for a Segment run's mask saved unchanged with no slice marked reviewed (it says no review),
else SEMIAUTOMATIC (a model's mask a person corrected; the model named by the mask's provenance: a run's
mask, a mask file reopened with its model, or a DICOM SEG an algorithm made, ``attnseg predict --dicom-seg``'s, opened
on the series) or MANUAL, naming no algorithm, for a mask no model made; its segments carry the mask's class names,
its SeriesDescription says it was reviewed and which slices were marked (as a PACS shows them: the images'
InstanceNumbers, else 1-based slice numbers; napari's are 0-based), and the marks
themselves travel in its private block (reopened in napari or given to ``attnseg export``, the slices reviewed
again, :mod:`..data.dicom_seg_write`). The refusals
are Save mask's (never over the image's file, nor a file that is not a mask this plugin saved: a .dcm there is
replaced only when it is a SEG written by this plugin); a big mask is written in a worker from what was taken when
Save was pressed. A mask with no foreground writes nothing (a SEG holds at least one frame), said.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import AttnSegError
from . import save_mask as _save
from ._common import is_deleted, notify_error, notify_info

SEG_FILTER, SEG_SUFFIXES = _save.SEG_FILTER, _save.SEG_SUFFIXES
REDO = ("Its files changed since the image was opened: save the mask as NIfTI (.nii.gz), or open the series again "
        "(File > Open Folder) and draw the mask on it.")


def dicom_image(panel, layer=None):
    """The Correct tab's image when it was read from a DICOM series by this plugin's reader (and not reoriented),
    else None; with ``layer``, only when the mask lies on it voxel for voxel (the same shape)."""
    viewer, name = panel.viewer, panel.image_combo.value
    image = viewer.layers[name] if name in viewer.layers else None
    md = getattr(image, "metadata", None) or {}
    if image is None or image._type_string != "image" or md.get("format") != "dicom" or not md.get("source_path") \
            or md.get("affine") is None or md.get("reoriented_from"):
        return None
    if layer is not None and tuple(np.shape(image.data)[: layer.ndim]) != tuple(np.shape(layer.data)):
        return None
    return image


def is_our_seg(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM SEG this plugin wrote (Save mask, ``attnseg predict --dicom-seg``)."""
    import pydicom

    from ..data.dicom_seg_write import MANUFACTURER

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["Modality", "Manufacturer"])
    except Exception:  # noqa: BLE001 - not DICOM, unreadable: not ours
        return False
    return str(ds.get("Modality") or "") == "SEG" and str(ds.get("Manufacturer") or "") == MANUFACTURER


def seg_algorithm(layer) -> tuple[str, str] | None:
    """The algorithm (name, version) that made ``layer``: that of the DICOM SEG it was opened from (its first segment
    an algorithm made: the version as that SEG named it), else its model (a run's mask, a mask file saved with its
    model); None: drawn by hand."""
    from ..data.dicom_seg_write import algorithm_of
    from ..data.volume import model_info_of

    md = layer.metadata
    if md.get("format") == "dicom-seg" and (found := _seg_file_algorithm(md.get("source_path"))) is not None:
        return found
    if (model := model_info_of(md.get("attnseg"))) is not None:
        return algorithm_of(model)[:2]  # (as ``attnseg predict --dicom-seg`` names it: the full weights sha256)
    return None


def _seg_file_algorithm(source) -> tuple[str, str] | None:
    """(name, version) of the algorithm that made the DICOM SEG ``source``'s first segment not drawn by hand."""
    if not source or not Path(str(source)).is_file():
        return None
    import pydicom

    try:
        ds = pydicom.dcmread(str(source), stop_before_pixels=True, specific_tags=["Modality", "SegmentSequence"])
    except Exception:  # noqa: BLE001 - not DICOM, unreadable: no algorithm known
        return None
    for item in ds.get("SegmentSequence") or [] if str(ds.get("Modality") or "") == "SEG" else []:
        if str(item.get("SegmentAlgorithmType") or "MANUAL") != "MANUAL" and item.get("SegmentAlgorithmName"):
            ident = (item.get("SegmentationAlgorithmIdentificationSequence") or [None])[0]
            return str(item.SegmentAlgorithmName), str((ident or {}).get("AlgorithmVersion") or "unknown")
    return None


def seg_description(model: str | None, reviewed: list[int], ndim: int, unchanged: bool = False,
                    slices: Sequence | None = None) -> str:
    """The SEG's SeriesDescription (at most 64 characters): who made it, that it was reviewed and which slices, as a
    PACS user finds them: 'reviewed images 3-5', the InstanceNumbers of the source images of ``slices`` (the series'
    frames, :func:`~..data.dicom_seg_write.source_slices`) where each image has its own, one multi-frame file's frame
    numbers ('reviewed frames 5-6'), else 'reviewed slices 3-5 of 6', 1-based among the real images (a slice the reader
    inserted for a missing image is left out, :func:`~..data.dicom_seg_write.reviewed_numbers`). A model's
    3D mask with no slice marked says no review (was 'corrected, reviewed' for a mask saved untouched);
    ``unchanged``: the model's own mask, as predict names its SEG."""
    from ..correct import format_slice_ranges
    from ..data.dicom_seg_write import reviewed_numbers

    if model and unchanged and not reviewed:
        return f"attnseg {model}"[:64]
    base = f"attnseg {model} corrected" if model else "attnseg manual"
    if model and not reviewed and ndim == 3:
        return base[:64]
    if not reviewed or ndim == 2:
        return f"{base}, reviewed"[:64]
    kind, numbers, total = reviewed_numbers(slices, reviewed) if slices is not None else \
        ("slices", [k + 1 for k in sorted(set(reviewed))], None)
    of = f" of {total}" if total else ""
    text = f"{base}, reviewed {kind} {format_slice_ranges(numbers)}{of}"
    if len(text) > 64:
        text = f"{base}, reviewed {len(reviewed)} slices"
    return text if len(text) <= 64 else f"{base[: 64 - len(text)]}, reviewed {len(reviewed)} slices"


def _refusal(panel, layer, path: Path, asked: bool) -> str | None:
    """Why ``layer`` is not written as a SEG at ``path`` (None: it may be)."""
    image = dicom_image(panel, None)
    if image is None:
        chosen = panel.image_combo.value
        on = f"its image {chosen!r} was not read from a DICOM series" if chosen else "no image is chosen for it"
        return (f"{layer.name} cannot be saved as a DICOM SEG: {on} (a SEG is placed on the DICOM images it "
                f"segments). Save it as NIfTI (.nii.gz) or TIFF (.tif), or open its DICOM series (File > Open Folder) "
                "and choose it as the image in the Correct tab.")
    if dicom_image(panel, layer) is None:
        return (f"{layer.name} {tuple(np.shape(layer.data))} does not lie on the DICOM image {image.name} "
                f"{tuple(np.shape(image.data))} voxel for voxel: choose its own image in the Correct tab, or save the "
                "mask as NIfTI (.nii.gz).")
    data, ignore = layer.data, layer.metadata.get("ignore_value")
    top = int(np.max(data, initial=0)) if np.size(data) else 0
    if top == 0 or (ignore is not None and not np.any((np.asarray(data) != 0) & (np.asarray(data) != ignore))):
        return (f"{layer.name} holds no foreground: a DICOM SEG holds at least one segment frame, so none was "
                "written. Paint the structures first, or save the empty mask as NIfTI (.nii.gz).")
    return panel._refusal(path, layer, asked)


def save_as_seg(panel, layer, path: Path, asked: bool):
    """Write ``layer`` as a DICOM SEG at ``path`` on its DICOM image's series (see the module docstring); returns
    the path written, None when nothing was, or the worker writing a big mask."""
    from .. import __version__
    from ..data.volume import model_info_of

    if (why := _refusal(panel, layer, path, asked)) is not None:
        notify_error(why)
        panel.save_label.value = f"Not saved: {why}"
        return None
    image = dicom_image(panel, layer)
    md = layer.metadata
    model = seg_algorithm(layer)
    rev, names = panel._reviewed(layer), [str(n) for n in md.get("class_names") or []]
    typed = [n.strip() for n in str(panel.class_names_edit.value or "").split(",")]
    names = names or (typed if all(typed) else [])  # (the Correct tab's names, where the mask keeps none)
    algorithm, version = model or ("", "")
    pred = md.get("attnseg_prediction")  # (a Segment run's mask: saved untouched and unmarked, the model's own)
    unchanged = bool(model) and not rev and pred is not None and np.array_equal(np.asarray(pred), layer.data)
    src = Path(str(image.metadata["source_path"]))
    if src.is_symlink() and src.is_file() and src.resolve().parent != src.parent:  # (predict's <case>_image.dcm:
        src = src.resolve()  # the reader read the series around the file it links to, :func:`..data.io._read_dicom`)
    press = {"src": str(src), "affine": np.asarray(image.metadata["affine"], float),
             "classes": names, "algorithm": algorithm, "version": version,
             "algorithm_type": "AUTOMATIC" if unchanged else "SEMIAUTOMATIC" if model else "MANUAL",
             "ignore": md.get("ignore_value"),
             "description": (algorithm if model else None, rev, layer.ndim, unchanged),  # (named on the series' images)
             "software": f"napari-attnseg {__version__}", "reviewed": rev if layer.ndim == 3 else None,
             "sha": (model_info_of(md.get("attnseg")) or {}).get("weights_sha256")}
    done = _SavedSeg(panel, layer, path, rev, names, image.name, press)
    data = np.array(layer.data)  # (the mask as pressed: strokes made while a worker writes go into the next save)
    if np.size(data) > _save.BACKGROUND_VOXELS:  # a big volume: written in a worker
        return panel._save_in_background(done.write, data, {}, done)
    try:
        written = done.write(str(path), data, {})[0]
    except (AttnSegError, OSError, ValueError) as exc:
        return done.failed(exc)
    return done(written)


class _SavedSeg(_save._Saved):
    """Save mask's report for a SEG, and its writer (what it writes was all taken when Save was pressed)."""

    def __init__(self, panel, layer, path: Path, rev: list[int], names: list, image: str, press: dict):
        super().__init__(panel, layer, path, rev, names, None)
        self.image, self.press, self.note, self.described = image, press, None, ""

    def describe(self, slices: list) -> str:
        """The SeriesDescription, once the series' images are read (in the writer): the reviewed slices by their
        InstanceNumbers, :func:`seg_description`."""
        self.described = seg_description(*self.press["description"], slices=slices)
        return self.described

    def write(self, path: str, data: np.ndarray, _meta: dict) -> list[str]:
        """Write the SEG (in a worker for a big mask: it reads no layer, only the series' headers on disk)."""
        from ..data.dicom_seg_write import write_dicom_seg

        p, notes = self.press, []
        if p["ignore"] is not None and np.any(data == p["ignore"]):  # (an export's 'ignore': no class of the SEG)
            notes.append(f"{int(np.count_nonzero(data == p['ignore']))} voxels of value {p['ignore']} ('ignore': not "
                         "reviewed) are left out")
            data = np.where(data == p["ignore"], 0, data)
        done, note = write_dicom_seg(path, p["src"], data, p["classes"], p["algorithm"], p["version"], p["affine"],
                                     p["software"], p["algorithm_type"], self.describe, REDO, p["reviewed"],
                                     p["sha"])
        if not done:
            raise AttnSegError(note or "no DICOM SEG written")
        self.note = "; ".join(notes + ([note] if note else [])) or None
        return [path]

    def __call__(self, written: str) -> str:
        from ..correct import format_slice_ranges

        _save._SAVED.add(Path(written).resolve())
        p, rev = self.press, self.rev
        made = (f"AUTOMATIC: {p['algorithm']}'s mask, not changed nor reviewed" if p["algorithm_type"] == "AUTOMATIC"
                else f"SEMIAUTOMATIC, corrected from {p['algorithm']}" if p["algorithm"] else "MANUAL, no model")
        segments = ", ".join(p["classes"][1:]) if len(p["classes"]) > 1 else "class 1, ... (no class names given)"
        kept = (f"reviewed slice{'s' if len(rev) != 1 else ''} {format_slice_ranges(rev)} (napari's numbers) named in "
                f"its series description, '{self.described}', and kept as marks napari and attnseg export read back"
                if rev
                else "no reviewed slices (none marked)")
        text = (f"Saved {self.name} to {written} as a DICOM SEG on {self.image}'s series ({made}; segments "
                f"{segments}; {kept}).") + (f" Note: {self.note}." if self.note else "")
        if not is_deleted(self.panel):
            self.panel.save_label.value = text
        notify_info(text)
        return written
