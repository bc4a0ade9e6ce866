"""The Correct panel's export fields across sessions: the dataset folder last exported to is proposed by a new
panel, the next napari session's too (:mod:`napari_attnseg.settings`). :class:`CorrectExport` is a mixin of
:class:`~.correct_widget.CorrectWidget` (whose ``export`` records each export there)."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import FileEdit

from ..settings import last_export


def folder_text(edit: FileEdit) -> str:
    """The folder typed or chosen in a FileEdit ('' when empty; FileEdit.value would say '.')."""
    return str(edit.line_edit.value).strip()


class CorrectExport:
    """Needs the panel's export fields (``dataset_edit``, ``format_combo``, ``case_edit``)."""

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

    def _last_case_hint(self, case_id) -> None:
        if case_id:
            self.case_edit.native.setPlaceholderText(f"next free case id (last export: {case_id})")
            self.case_edit.tooltip = (f"The case's name in the dataset; empty: the next free id. The last export wrote "
                                      f"{case_id}: type it and tick Replace the case to replace it.")


def _fine_tuned_on() -> list[str]:
    """The dataset folders (still there) that the models of the user models folder were trained on."""
    from ..models.registry import available_models, user_models

    cards = available_models()
    found = [((cards.get(name) or {}).get("training") or {}).get("dataset") for name in user_models()[0]]
    return list(dict.fromkeys(str(d) for d in found if d and (Path(d) / "manifest.json").is_file()))

