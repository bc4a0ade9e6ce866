"""The Correct tab's *Save mask...* button: the chosen mask written through this plugin's own writers.

napari's File > Save Selected Layers preselects napari's labels TIFF writer, which writes the pixels only: a mask
saved with the dialog's default type lost its reviewed slices and class names (a plugin cannot be made napari's
default writer, see napari.yaml). The button asks for a file name (NIfTI or TIFF) and writes the mask with
:func:`~.io_hooks.write_labels_nifti` / :func:`~.io_hooks.write_labels_tif`, given what napari gives them (the
layer's data tuple), so the file is the one File > Save writes with the plugin's type. It never writes over a file
that is not a mask this plugin saved (the image itself, a reference segmentation): the dialog asks before
replacing, and such a file is refused, unless it is the file the mask itself was opened from (a mask an older
version or another tool saved without marks: it was refused, and its user could not save it back): that file is
replaced and its earlier content kept beside it as ``<name>.before-save.nii.gz``. A mask on a DICOM series may also
be saved as a DICOM SEG on that series (:mod:`.save_seg`: the dialog offers "DICOM SEG (*.dcm)" then).

:class:`SaveMask` is a mixin of :class:`~.correct_widget.CorrectWidget` (its ``labels_layer()``, ``image_combo``,
``viewer`` and the form's ``save_label``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QFileDialog

from ..errors import AttnSegError
from ._common import error_message, is_deleted, notify_error, notify_info
from .correct_stats import BACKGROUND_VOXELS

NIFTI_FILTER, TIFF_FILTER = "NIfTI (*.nii.gz)", "TIFF (*.tif)"
FILTERS = f"{NIFTI_FILTER};;{TIFF_FILTER}"
NIFTI_SUFFIXES, TIFF_SUFFIXES = (".nii.gz", ".nii"), (".tif", ".tiff")
SEG_FILTER, SEG_SUFFIXES = "DICOM SEG (*.dcm)", (".dcm",)  # (offered for a mask on a DICOM series: save_seg)
_SAVED: set[Path] = set()  # the files Save mask wrote in this session (it may replace them, marks or not)


def _source_path(layer) -> str | None:
    """The file a layer was opened from (this plugin's readers' ``source_path``, else napari's ``source``)."""
    path = (getattr(layer, "metadata", None) or {}).get("source_path") or getattr(getattr(layer, "source", None), "path", None)
    return str(path) if path else None


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


def _in_dataset(path: Path) -> bool:
    """A label file of a dataset (nnU-Net's ``labelsTr``/``labelsTs``, an export's ``labels``): not saved over as a
    mask's own file (its dataset's manifest and other cases go with it)."""
    parent = path.parent
    return parent.name in ("labelsTr", "labelsTs") or (parent / "manifest.json").is_file() or (
        parent.parent / "manifest.json").is_file()


def own_file(layer, path: Path | None = None) -> Path | None:
    """The NIfTI or TIFF file ``layer`` was opened from (the one ``path`` names, when given), outside a dataset;
    None when it has none. A run's mask has none: its ``source_path`` is its image's file."""
    md = getattr(layer, "metadata", None) or {}
    src = getattr(getattr(layer, "source", None), "path", None) or (  # (napari's; else a TIFF mask reopened here)
        None if {"attnseg", "attnseg_prediction", "attnseg_source_uid"} & set(md) else md.get("source_path"))
    src = str(src) if src else None
    if not src or not src.lower().endswith(NIFTI_SUFFIXES + TIFF_SUFFIXES) or _in_dataset(Path(src)):
        return None
    return Path(src) if path is None or _same_file(src, path) else None


def _seg_proposal(panel, layer) -> str | None:
    """The DICOM SEG file ``layer`` was opened from, where Save mask may write it as a SEG (its series is the Correct
    tab's image): that file when this plugin wrote it (it is replaced), else a free '<name>-2.dcm' beside it."""
    from ..data.labels_in import dicom_labels_file
    from .save_seg import dicom_image

    if (layer.metadata or {}).get("format") != "dicom-seg" or dicom_image(panel, layer) is None \
            or (found := dicom_labels_file(_source_path(layer) or "")) is None:  # (a folder holding only it: its file)
        return None
    src = found[0]
    stem = src.name[:-4] if src.name.lower().endswith(SEG_SUFFIXES) else src.name  # ('SEG0001': saved as .dcm)
    proposed, k = src.with_name(stem + ".dcm") if stem == src.name else src, 2
    while proposed.exists() and not (proposed.resolve() in _SAVED or plugin_mask(proposed)):
        proposed, k = src.with_name(f"{stem}-{k}.dcm"), k + 1  # (another tool's SEG is not written over)
    return str(proposed)


def backup_name(path: Path) -> Path:
    """A free name beside ``path`` for the content a save replaces: '<name>.before-save.nii.gz' (then '-2', ...)."""
    suffix = next(s for s in NIFTI_SUFFIXES + TIFF_SUFFIXES if path.name.lower().endswith(s))
    stem, ext = path.name[: -len(suffix)], path.name[-len(suffix):]
    k = 1
    while (found := path.with_name(f"{stem}.before-save{'' if k == 1 else f'-{k}'}{ext}")).exists():
        k += 1
    return found


def plugin_mask(path: str | Path) -> bool:
    """Whether ``path`` is a mask this plugin wrote: a NIfTI with its header note (reviewed slices, class names or
    model) or a TIFF with its marks. A file without them (an image, a reference segmentation) is not."""
    name = str(path).lower()
    if name.endswith(SEG_SUFFIXES):  # (a SEG this plugin wrote: Save mask's or attnseg predict --dicom-seg's)
        from .save_seg import is_our_seg

        return is_our_seg(path)
    if name.endswith(TIFF_SUFFIXES):
        from ..data.tiff import mask_marks

        return mask_marks(path) is not None
    if name.endswith(NIFTI_SUFFIXES):
        from ..data.nifti import _ours, load_nifti

        try:
            return bool(_ours(load_nifti(Path(path)).header))
        except Exception:  # noqa: BLE001 - not a NIfTI, unreadable: not ours
            return False
    return False


# what the writers read of a mask's metadata (its marks, names and model; its geometry; its image's TIFF axes)
WRITTEN_KEYS = ("affine", "spacing", "nifti", "reviewed_slices", "class_names", "attnseg", "ignore_value",
                "source_path", "attnseg_source_uid", "series")
SCANNER_CODES = {"qform_code": 1, "sform_code": 1}  # what write_nifti writes for a mask without its image's codes


def pressed_meta(path: Path, data, meta: dict, viewer) -> dict:
    """The layer tuple's ``meta`` for a write in a worker, with what the writer would look up in the viewer (the
    geometry of the open image the mask belongs to, a TIFF's axes) taken now, on the GUI thread, and its marks
    copied: the worker reads no layer (napari's layers are the GUI thread's), and an image closed or renamed, marks
    changed, while it writes leave the file as it was when Save was pressed (a mask without an affine of its own
    lost its image's patient position when that image was closed meanwhile)."""
    import copy

    from ..data.volume import model_info_of
    from .io_hooks import _geometry, _notify, _reference_geometry
    from .tiff_masks import AXIS_LETTERS, mask_axes

    md = {k: copy.deepcopy(v) for k, v in (meta.get("metadata") or {}).items() if k in WRITTEN_KEYS and k != "attnseg"}
    if (model := model_info_of((meta.get("metadata") or {}).get("attnseg"))) is not None:
        md["attnseg"] = model  # (the model that made it, as the writers keep it; not the run's whole provenance)
    frozen = {**meta, "metadata": md}
    if str(path).lower().endswith(TIFF_SUFFIXES):
        axes = mask_axes(meta, np.shape(data), viewer)
        if axes is None and 2 <= np.ndim(data) <= 3:  # (unknown: the writer's own ZYX / YX, written the same)
            axes = "ZYX"[-np.ndim(data):]
        if axes is not None and all(a.lower() in AXIS_LETTERS for a in axes):
            frozen["axis_labels"] = tuple(a.lower() for a in axes)  # (the writer reads them back as these axes)
        return frozen
    scale = tuple(meta.get("scale", (1.0,) * np.ndim(data)))
    spacing, affine = _geometry(md, scale)
    nifti = md.get("nifti")
    if affine is None or not nifti:  # (as write_labels_nifti looks it up)
        ref = _reference_geometry(np.shape(data), scale, affine, viewer)
        if ref is not None:
            if affine is None:
                affine = np.asarray(ref["affine"], float)
                spacing = tuple(float(s) for s in ref.get("spacing") or spacing)
            nifti = nifti or ref.get("nifti")
    if affine is None:  # (write_nifti's affine of the voxel size alone, said now: the writer will not look)
        affine = np.eye(4)
        for i, s in enumerate(list(reversed(spacing[-np.ndim(data):]))[:3]):
            affine[i, i] = float(s)
        _notify(f"{path.name} is written without a patient position: no open image of the same shape and scale has "
                "a NIfTI/DICOM affine, so the file's affine holds only the voxel size (origin 0, no orientation) and "
                "other tools may show it shifted or flipped against the image.")
    md.update(affine=np.asarray(affine, float).tolist(), spacing=[float(s) for s in spacing],
              nifti=copy.deepcopy(nifti) or dict(SCANNER_CODES))
    return frozen


class SaveMask:
    """Needs the panel's ``viewer``, ``labels_layer()``, ``_reviewed()``, ``image_combo`` and ``save_label``."""

    def _save_proposal(self, layer) -> tuple[str, str]:
        """The file name the dialog proposes and its filter: the file the mask was opened from (a DICOM SEG while its
        series is the image: as a SEG, '<name>-2.dcm' for another tool's, which is not written over), else '<mask
        name>.nii.gz' beside the image's source file (a 2D TIFF image's mask as '.tif'; '<mask name>-2.nii.gz' where
        a file it would refuse has that name), else in the home folder."""
        if (seg := _seg_proposal(self, layer)) is not None:  # (was '<layer>.nii.gz' beside the series)
            return seg, SEG_FILTER
        images = [_source_path(ly) for ly in self.viewer.layers if ly._type_string == "image"]
        own = own_file(layer)
        if own is not None and own.parent.is_dir() and not any(s and _same_file(s, own) for s in images):
            return str(own), TIFF_FILTER if own.name.lower().endswith(TIFF_SUFFIXES) else NIFTI_FILTER  # (back there)
        image = self.viewer.layers[self.image_combo.value] if self.image_combo.value in self.viewer.layers else None
        source = _source_path(image) if image is not None else None
        folder = Path(source).parent if source and Path(source).parent.is_dir() else Path.home()
        tiff = bool(source) and str(source).lower().endswith(TIFF_SUFFIXES) and layer.ndim == 2
        name, suffix = layer.name.replace("/", "_").replace("\\", "_"), ".tif" if tiff else ".nii.gz"
        proposed, k = folder / f"{name}{suffix}", 2
        while proposed.exists() and not (proposed.resolve() in _SAVED or plugin_mask(proposed)):
            proposed, k = folder / f"{name}-{k}{suffix}", k + 1  # (another tool's file there would be refused)
        return str(proposed), TIFF_FILTER if tiff else NIFTI_FILTER

    def _refusal(self, path: Path, layer, asked: bool) -> str | None:
        """Why ``path`` must not be written (None: it may): an open image's file, an existing file that is not a
        mask this plugin saved, or an existing file the dialog did not ask about (a suffix was added to the name)."""
        for other in self.viewer.layers:
            src = _source_path(other)
            if other is not layer and src and other._type_string == "image" and _same_file(src, path):
                return (f"{path} is the file the image {other.name!r} was opened from: Save mask does not write "
                        f"{layer.name} over it; choose another name (e.g. {layer.name}.nii.gz).")
        if not path.exists():
            return None
        if path.is_dir():
            return f"{path} is a folder; choose a file name for {layer.name}."
        if not asked:
            return (f"{path} already exists and the dialog did not ask to replace it (the file type's suffix was "
                    f"added to the name typed): choose {path.name} itself to replace it, or another name.")
        if not (path.resolve() in _SAVED or plugin_mask(path) or own_file(layer, path) is not None):
            return (f"{path} already exists and is not a mask this plugin saved (it carries no reviewed slices, class "
                    f"names or model): Save mask does not write {layer.name} over it; choose another name, or move "
                    "that file away first.")
        return None

    def save_mask(self):
        """Ask for a file name and write the chosen mask there with its reviewed slices, class names and geometry;
        returns the path written (None when nothing was); a big mask is written in a worker, returned."""
        from .io_hooks import write_labels_nifti, write_labels_tif

        layer = self.labels_layer()
        if layer is None:
            return None
        if getattr(self, "_saving", None) is not None:  # (two writes of one file at once: a torn file)
            notify_info(f"{self.save_label.value} Press Save mask again when it is saved.")
            return None
        from .save_seg import dicom_image, save_as_seg

        start, chosen = self._save_proposal(layer)
        filters = FILTERS + (f";;{SEG_FILTER}" if dicom_image(self, layer) is not None else "")  # (on a DICOM series)
        answer, kind = QFileDialog.getSaveFileName(self, f"Save {layer.name}", start, filters, chosen)
        if not answer:
            return None  # (cancelled)
        path, asked = Path(answer).expanduser(), True
        if not path.name.lower().endswith(NIFTI_SUFFIXES + TIFF_SUFFIXES + SEG_SUFFIXES):  # 'mask': the type's suffix
            suffix = {TIFF_FILTER: ".tif", SEG_FILTER: ".dcm"}.get(kind, ".nii.gz")
            path, asked = path.with_name(path.name + suffix), False
        if path.name.lower().endswith(SEG_SUFFIXES):  # a DICOM SEG on the mask's DICOM series
            return save_as_seg(self, layer, path, asked)
        if (why := self._refusal(path, layer, asked)) is not None:
            notify_error(why)
            self.save_label.value = f"Not saved: {why}"
            return None
        backup = None  # the mask's own file, saved without marks: its content is kept beside it
        if path.exists() and path.resolve() not in _SAVED and not plugin_mask(path):
            backup = backup_name(path)
            try:
                shutil.copy2(path, backup)
            except OSError as exc:
                notify_error(f"{layer.name} was not saved: {path} could not be kept as {backup} first ({exc}).")
                return None
        writer = write_labels_tif if path.name.lower().endswith(TIFF_SUFFIXES) else write_labels_nifti
        data, meta, _ = layer.as_layer_data_tuple()  # what napari's File > Save hands a writer
        done = _Saved(self, layer, path, self._reviewed(layer), list(layer.metadata.get("class_names") or []), backup)
        if np.size(data) > BACKGROUND_VOXELS:  # a big volume: written in a worker (its .nii.gz took 0.74 s)
            return self._save_in_background(writer, np.array(data), pressed_meta(path, data, meta, self.viewer), done)
        try:
            written = writer(str(path), data, meta)[0]
        except (AttnSegError, OSError, ValueError) as exc:
            return done.failed(exc)
        return done(written)

    def _save_in_background(self, writer, data: np.ndarray, meta: dict, done: _Saved):
        """Write a big mask in a worker (compressing a 300 x 512 x 512 CT's mask held the event loop 0.74 s): the
        mask as it was when Save was pressed (its copy, its marks and names), said when written. One at a time."""
        from .job_pool import thread_worker

        self.save_label.value = f"Saving {done.name} to {done.path}..."

        @thread_worker(start_thread=False, ignore_errors=True)
        def work():
            try:
                return writer(str(done.path), data, meta)[0]
            except (AttnSegError, OSError, ValueError) as exc:
                return exc

        def finished(result):
            self._saving = None
            done.failed(result) if isinstance(result, Exception) else done(result)

        def errored(exc):
            self._saving = None
            done.failed(exc)

        self._saving = worker = work()
        worker.returned.connect(finished)
        worker.errored.connect(errored)
        worker.start()
        return worker


class _Saved:
    """What Save mask says once ``layer`` is written to ``path`` (or could not be): its reviewed slices ``rev`` and
    class ``names`` as they were when Save was pressed, and the ``backup`` kept of the file it replaced."""

    def __init__(self, panel, layer, path: Path, rev: list[int], names: list, backup: Path | None):
        import weakref

        from .correct_layers import kept_state

        self.panel, self.name, self.path, self.rev, self.names, self.backup = panel, layer.name, path, rev, names, backup
        self.layer, self.kept = weakref.ref(layer), kept_state(layer)  # (saved: removing it unchanged loses nothing)

    def failed(self, exc: BaseException) -> None:
        notify_error(f"{self.name} could not be saved to {self.path}: {error_message(exc)}")
        if not is_deleted(self.panel) and self.panel.save_label.value.startswith("Saving "):
            self.panel.save_label.value = f"Not saved: {self.name} could not be saved to {self.path}."

    def __call__(self, written: str) -> str:
        from ..correct import format_slice_ranges

        _SAVED.add(Path(written).resolve())
        if (layer := self.layer()) is not None:
            from .correct_layers import KEPT_KEY

            layer.metadata[KEPT_KEY] = self.kept
        rev, names = self.rev, self.names
        kept = (f"{len(rev)} reviewed slice{'s' if len(rev) != 1 else ''} ({format_slice_ranges(rev)})" if rev
                else "no reviewed slices (none marked)")
        note = f", class names {', '.join(map(str, names))}" if names else ""
        if self.backup is not None:
            note += (f". The file it replaced had no reviewed slices, class names or model (saved by an older version "
                     f"or another tool): kept as {self.backup.name}")
        text = f"Saved {self.name} to {written} with {kept}{note}."
        if not is_deleted(self.panel):
            self.panel.save_label.value = text
        notify_info(text)
        return written
