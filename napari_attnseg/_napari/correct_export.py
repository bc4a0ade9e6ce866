"""The Correct panel's export fields across sessions: the dataset folder last exported to is proposed by a new
panel, the next napari session's too (:mod:`napari_attnseg.settings`). :class:`CorrectExport` is a mixin of
:class:`~.correct_widget.CorrectWidget` (whose ``export`` records each export there)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from magicgui.widgets import FileEdit

from ..settings import last_export
from ._common import notify_warning


def folder_text(edit: FileEdit) -> str:
    """The folder typed or chosen in a FileEdit ('' when empty; FileEdit.value would say '.'), a leading '~' as the
    home folder (typed '~/datasets/lung', the export wrote into a folder named '~' in napari's working folder)."""
    text = str(edit.line_edit.value).strip()
    return os.path.expanduser(text) if text.startswith("~") else text


class CorrectExport:
    """Needs the panel's export fields (``dataset_edit``, ``format_combo``, ``case_edit``, ``class_names_edit``),
    ``image_combo`` and ``_reviewed()``."""

    def class_names(self, layer) -> list[str] | None:
        """The names typed in the form (None: the dataset's default), checked against the mask. The mask's own names
        (the field as the mask filled it) that are none of the chosen dataset's classes (a model's ``nucleus`` against
        ``foreground``): None, the values exported as they are with a warning, as ``attnseg export`` does with a saved
        mask's names (typed names are matched by name: renumbered, or a class the dataset lacks refused)."""
        self._check_no_ignore(layer)
        text = self.class_names_edit.value.strip()
        if not text:
            return None
        names = [n.strip() for n in text.split(",")]
        if any(not n for n in names):
            raise ValueError(f"Class names {text!r}: a name is empty; write one name per label value, comma-separated.")
        if self.foreground_box.value and len(names) > 2:  # (the box stays ticked when another mask is chosen)
            raise ValueError(f"'One class (labels > 0)' is ticked: every labelled pixel of {layer.name} would be exported "
                             f"as {names[1]!r}, but {len(names)} class names are given ({', '.join(names)}). Untick it "
                             "to export the mask's classes, or give two names (e.g. background, nucleus).")
        data, rev = np.asarray(layer.data), self._export_marks(layer)[0]  # (a slice with no image: 'ignore')
        data = (data > 0).view(np.uint8) if self.foreground_box.value else data  # (instance ids: one class)
        if layer.ndim == 3 and rev:  # unreviewed slices are exported as 'ignore': their values need no name
            top = max((int(data[z].max(initial=0)) for z in sorted(rev) if 0 <= z < data.shape[0]), default=0)
        else:  # (slice by slice above: a copy of every reviewed slice took 313 ms on a 300-slice CT, 9 ms so)
            top = int(data.max(initial=0))
        if top >= len(names):  # (a 2D mask has no slices: how much, where, and the other way out: repaint it)
            on = layer.ndim == 3 and rev
            rows = [data[z] for z in sorted(rev) if 0 <= z < data.shape[0]] if on else [data]
            bad = sorted({int(v) for r in rows for v in np.unique(r[r >= len(names)])})
            count, what = sum(int((r >= len(names)).sum()) for r in rows), "voxels" if layer.ndim == 3 else "pixels"
            raise ValueError(f"{layer.name} holds label value{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))} "
                             f"({count} {what}{' on its reviewed slices' if on else ''}), but only {len(names)} class "
                             f"names are given ({', '.join(names)}): add a name for every value from 0 to {top}, or "
                             f"paint those {what} with a class's value (the eraser: background).")
        if 1 <= top < len(names) - 1:  # e.g. a tumour drawn as 1 under the brain model's default names
            notify_warning(f"{layer.name}'s reviewed slices hold values 0 to {top} only, and {len(names)} class names "
                           f"are given: value {top} is exported as {names[top]!r}. If it is something else (a "
                           "tumour under the model's 'grey matter'), rename the classes (e.g. background, tumour).")
        elif top >= 1 and (model := foreign_model(layer, names)):  # a lung tumour exported as 'nucleus'
            notify_warning(f"Class names {', '.join(names)} are those of {model}, which made {layer.name} but was not "
                           f"trained on this kind of image (its run warned so): value 1 is exported as {names[1]!r}. If "
                           "it is something else, type the names of what you corrected in Class names (e.g. "
                           "background, tumour) before you export.")
        if text == getattr(self, "_auto_names", None) and (folder := folder_text(self.dataset_edit)):
            from ..data.export_plan import names_by_value

            if note := names_by_value(names, folder, layer.name):  # the mask's own names, none of the dataset's
                notify_warning(note)
                return None
        return names

    def colour_picture(self, image_layer, layer) -> int | None:
        """The channels (3 or 4) of the model that made the mask ``layer`` when it reads colours and ``image_layer`` is
        RGB: its colours are exported (:func:`~napari_attnseg.data.export_colour.colour_layer_export`, the rule of
        ``attnseg export``, on the export's worker; ``export_case(..., colour=True)`` writes them); None: the grey."""
        if not getattr(image_layer, "rgb", False):
            return None
        from ..data.export_colour import colour_layer_channels
        from ..data.layouts import manifest_or_empty
        from ._common import layer_array

        manifest = manifest_or_empty(folder_text(self.dataset_edit))  # (a dataset of colour pictures: its channels)
        colour = (len(manifest.get("channel_names") or ()) or 3) if manifest.get("colour") else 0
        return colour_layer_channels((layer.metadata or {}).get("attnseg"), layer.ndim,
                                     tuple(layer_array(image_layer).shape), layer.metadata.get("source_path"), colour)

    def _check_no_ignore(self, layer) -> None:
        """A mask reopened from a label file an export wrote holds that dataset's 'ignore' value on its unreviewed
        slices: a reviewed slice still holding it is refused (it would be exported as a class, or refused as a value
        outside the label table without saying why)."""
        from ..correct import format_slice_ranges
        from .correct_stats import mask_ignore
        from .tiff_masks import IGNORE_NAME

        if layer.ndim != 3 or (ignore := mask_ignore(layer)) is None:  # (the file's own value, else its dataset's)
            return
        data = np.asarray(layer.data)
        left = [z for z in sorted(set(self._export_marks(layer)[0])) if 0 <= z < data.shape[0] and (data[z] == ignore).any()]
        if left:
            raise ValueError(f"{layer.name}: reviewed slices {format_slice_ranges(left)} still hold {IGNORE_NAME!r} "
                             f"(value {ignore}, the slices nobody reviewed), which is never exported as a class: paint "
                             "it over (0 for background, or a class) or take their reviewed mark off (Shift+R), "
                             "then export.")

    def _series_meta(self, layer) -> dict:
        """The metadata of the image chosen for the 3D mask ``layer`` (where its reader records the slices it inserted
        for a DICOM series' missing images); {} for a 2D mask or no image."""
        image = self.viewer.layers[self.image_combo.value] if self.image_combo.value in self.viewer.layers else None
        return dict(image.metadata) if layer.ndim == 3 and image is not None and image.ndim == 3 else {}

    def _inserted(self, layer) -> list[int]:
        """The slices of the mask ``layer`` where the chosen image's DICOM series misses an image (its reader inserted
        an empty slice there, :func:`~napari_attnseg.data.dicom.inserted_slices`): nothing to review there."""
        from ..data.dicom import inserted_slices

        return inserted_slices(self._series_meta(layer), int(layer.data.shape[0])) if layer.ndim == 3 else []

    def _export_marks(self, layer) -> tuple[list[int], str | None]:
        """The reviewed slices an export takes, and the note when some marks lie on slices with no image (a mask saved
        with such a mark, reopened): those are exported as 'ignore', as ``attnseg export`` does and says
        (:func:`~napari_attnseg.data.inserted.drop_inserted`); a mask there is nobody's reading of an image."""
        from ..data.inserted import drop_inserted

        rev = self._reviewed(layer)
        if layer.ndim != 3 or not rev:
            return rev, None
        kept, note = drop_inserted(self._series_meta(layer), rev, int(layer.data.shape[0]))
        return list(kept or []), note

    def propose_last_export(self) -> None:
        """A new panel (the next napari session too) proposes the dataset folder last exported to, in its format,
        while that folder is still a dataset (day 2 no longer types it again). The case id stays empty (the next
        free id): proposing the last one would be refused, or with *Replace the case* write over it; the last id
        is named in the field's hint instead."""
        last = last_export()
        if last is None or folder_text(self.dataset_edit):
            return
        self.dataset_edit.line_edit.value = last["dataset"]
        if last.get("format") in self.format_combo.choices:
            self.format_combo.value = last["format"]
        self._last_case_hint(last.get("case_id"))

    def _last_case_hint(self, case_id, frames: list[str] | None = None) -> None:
        """The last export's case id in the case field's hint: for a time-lapse (``frames``, its 2D cases
        ``<case_id>_t000``...), the movie's id, which replaces its frames (the first frame's id made new cases
        ``<case>_t000_t000``...)."""
        if case_id:
            wrote = f"the frames {_frames_text(frames)} of the time-lapse {case_id}" if frames else case_id
            self.case_edit.native.setPlaceholderText(f"next free case id (last export: {case_id})")
            self.case_edit.tooltip = (f"The case's name in the dataset; empty: the next free id. The last export wrote "
                                      f"{wrote}: type {case_id} and tick Replace the case to replace "
                                      f"{'them' if frames else 'it'}.")


def movie_id(rec) -> str:
    """The case id an export was given: a time-lapse's (its frames' cases are ``<id>_t000``...), or the case's."""
    frames = list(getattr(rec, "frames", None) or [])
    return frames[0].rsplit("_t", 1)[0] if frames else rec.case_id


def _frames_text(frames: list[str]) -> str:
    return ", ".join(frames) if len(frames) <= 3 else f"{frames[0]} .. {frames[-1]}"


def exported_text(rec, n_frames: int) -> str:
    """What an export wrote: its case, or a time-lapse's frames as 2D cases (``n_frames``: the movie's frames)."""
    frames = list(getattr(rec, "frames", None) or [])
    if not frames:
        return f"Exported {rec.case_id}"
    of = "" if len(frames) == n_frames else f" of the {n_frames} (the reviewed ones; the others are left out)"
    return f"Exported {len(frames)} frame{'s' if len(frames) != 1 else ''}{of} as 2D cases {_frames_text(frames)}"


def foreign_model(layer, names: list[str]) -> str | None:
    """The model that made ``layer`` when ``names`` are its classes and its run warned that the image is not of the
    kind it was trained on (a CT given to a microscopy model); None otherwise."""
    from ..inference.checks import CT_UNLIKE

    run = (getattr(layer, "metadata", None) or {}).get("attnseg") or {}
    made = [str(c) for c in layer.features["class"]] if "class" in getattr(layer, "features", {}) else []
    if names != made or not any(CT_UNLIKE in str(w) for w in run.get("warnings") or []):
        return None
    return str(run.get("model") or "the model")


def _fine_tuned_on() -> list[str]:
    """The dataset folders (still there) that the models of the user models folder were trained on."""
    from ..models.registry import available_models, user_models

    cards = available_models()
    found = [((cards.get(name) or {}).get("training") or {}).get("dataset") for name in user_models()[0]]
    return list(dict.fromkeys(str(d) for d in found if d and (Path(d) / "manifest.json").is_file()))

