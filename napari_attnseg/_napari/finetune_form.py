"""The Fine-tune panel's form helpers: the *Intensity* choices and the *Validation slices* field (what it
means for the dataset, and that typed slices are reviewed ones)."""

from __future__ import annotations

from pathlib import Path

from ..display import CT_WINDOWS
from .correct_widget import folder_text

AUTO = "auto (from the data)"
CARD = "as the start model"
WINDOW_CHOICES = (AUTO, CARD, *(f"CT {name}" for name in CT_WINDOWS))
PLOT_MIN_HEIGHT = 170
VAL_TIP = {
    3: "Axial slices held out for validation, e.g. 20,33 (a reviewed slice with the object and one without); "
       "empty: chosen automatically among the reviewed slices, foreground included",
    2: "The dataset holds one 2D image: rows of it held out for validation, e.g. 100-150 (first axis); "
       "empty: chosen automatically",
    0: "The dataset holds several images: whole images are held out for validation (chosen automatically)",
}


def normalization_choice(choice: str) -> dict:
    """TrainConfig fields for an *Intensity* choice: ``auto`` leaves the trainer's defaults (a CT window
    for Hounsfield units when the start model does at least as well with it); "as the start model" never
    switches; a CT preset is that window."""
    if choice.startswith("CT "):
        lo, hi = CT_WINDOWS[choice[3:]]
        return {"normalization": {"scheme": "ct", "window": [lo, hi]}}
    if choice == CARD:
        return {"ct_window": None}
    return {}


class ValidationField:
    """Mixin of the Fine-tune panel (``dataset_edit``, ``val_edit``)."""

    def _cases(self) -> list[dict] | None:
        """The dataset's cases (the manifest's entries), None when it is not (yet) a dataset. Exports of one
        image count once, their reviewed slices together, as the trainer takes them (training/repeats.py)."""
        from ..data.manifest import read_manifest

        folder = folder_text(self.dataset_edit)
        try:
            entries = list(read_manifest(Path(folder))["cases"]) if folder else None
        except Exception:  # the run says what is wrong
            return None
        merged: dict[str, dict] = {}
        for c in entries or []:
            key = c.get("image_sha256") or c["case_id"]
            if key in merged:
                a, b = merged[key].get("reviewed_slices"), c.get("reviewed_slices")
                c = {**c, "reviewed_slices": None if a is None or b is None else sorted({*a, *b})}
            merged[key] = c
        return None if entries is None else list(merged.values())

    def _validation_field(self) -> None:
        """*Validation slices* are axial slices of a volume; of one 2D image, its rows (the field says so);
        a dataset of several images validates on whole images (the field is off)."""
        cases = self._cases() or []
        kind = 0 if len(cases) > 1 else 2 if cases and len(cases[0].get("shape") or ()) == 2 else 3
        self.val_edit.label = "Validation rows" if kind == 2 else "Validation slices"
        self.val_edit.tooltip = VAL_TIP[kind]
        self.val_edit.enabled = kind != 0

    def _val_slices(self) -> list[int] | None:
        """The typed *Validation slices* (None: automatic); raises ValueError with a message for the user."""
        from ..correct import parse_slice_ranges

        val = self.val_edit.value.strip() if self.val_edit.enabled else ""
        if not val:
            return None
        try:
            val_slices = parse_slice_ranges(val)
        except Exception as exc:
            raise ValueError(f"{self.val_edit.label} {val!r}: {exc}") from None
        self._check_reviewed(val_slices)
        return val_slices

    def _check_reviewed(self, val_slices: list[int]) -> None:
        """Typed validation slices must lie in the image, be reviewed ones (the others were exported as 'ignore')
        and leave a reviewed one to train on: said here, not by the run after its setup (minutes on a large CT)."""
        from ..correct import format_slice_ranges as ranges

        cases = self._cases()
        if not cases or len(cases) != 1:
            return
        what, n = self.val_edit.label, (cases[0].get("shape") or [None])[0]
        unit = "rows" if what == "Validation rows" else "slices"
        outside = [z for z in val_slices if n is not None and z >= n]
        if outside:
            raise ValueError(f"{what} {ranges(outside)}: the image of dataset {folder_text(self.dataset_edit)} has "
                             f"{n} {unit} (0-{n - 1}); type {unit} in that range, or leave the field empty to choose "
                             "automatically.")
        marks = cases[0].get("reviewed_slices")
        reviewed = None if marks is None else sorted(int(z) for z in marks)
        bad = [z for z in val_slices if reviewed is not None and z not in set(reviewed)]
        if bad:
            raise ValueError(f"{what} {ranges(bad)} are not reviewed (they were exported as "
                             "'ignore' and validate nothing); pick among the reviewed slices "
                             f"{ranges(reviewed) or '(none)'}, or leave the field empty to choose "
                             "automatically.")
        labelled = set(reviewed) if reviewed is not None else set(range(n)) if n is not None else None
        if labelled and labelled <= set(val_slices):
            raise ValueError(f"{what} {ranges(val_slices)} are all the {'reviewed ' if marks is not None else ''}"
                             f"{unit}: none is left to train on; type one or two of them, or leave the field empty "
                             "to choose automatically.")


TOOLTIPS = {
    "dataset_edit": "A dataset exported by Correct and export > Export (default: the last export)",
    "model_combo": "The model to fine-tune: by default the one that predicted the exported mask, else one whose "
                   "classes match the dataset's",
    "freeze_box": "Train only the decoder and the output layer: faster, and safer with very few reviewed slices",
    "name_edit": "The new model's name in the Segment tab's list and in its card",
    "description_edit": "One line saved in the model's card and shown in the Segment tab",
    "run_button": "Train within the budget; the model that validates best is saved and added to the Segment tab",
    "cancel_button": "Stop the run; the best model so far is kept",
}


def polish(panel) -> None:
    """Tooltips on the Fine-tune panel's fields and short buttons beside its folder fields."""
    from .correct_form import browse_button

    for name, tip in TOOLTIPS.items():
        getattr(panel, name).tooltip = tip
    browse_button(panel.dataset_edit, "dataset folder")
    browse_button(panel.out_edit, "output folder")
