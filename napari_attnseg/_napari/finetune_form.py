"""The Fine-tune panel's form helpers: the *Intensity* choices, the *Validation slices* field (what it
means for the dataset, and that typed slices are reviewed ones), what the panel reads of a dataset (exported, or
made elsewhere: :func:`dataset_summary`) and the fields a run holds while it goes (:func:`hold_form`)."""

from __future__ import annotations

import functools
import itertools
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
    "3 made elsewhere": "Axial slices held out for validation, e.g. 20,33 (one with the object and one without); "
                        "empty: chosen automatically among the labelled slices, foreground included",
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


RUN_FIELDS = ("dataset_edit", "model_combo", "minutes_spin", "freeze_box", "window_combo", "val_edit", "out_edit",
              "name_edit", "description_edit")  # what a run reads from the form: held while it goes


def hold_form(panel, running: bool) -> None:
    """While a run goes, the fields it read are held (disabled): a dataset chosen meanwhile re-proposed the start
    model, the new model's name and its folder, and the form named what the run was not using. Run and Cancel too."""
    for name in RUN_FIELDS:
        getattr(panel, name).enabled = not running
    panel.run_button.enabled, panel.cancel_button.enabled = not running, running
    if not running:
        panel._validation_field()  # (off again for a dataset of several images)


def dataset_summary(folder: str) -> dict | None:
    """What the panel reads of the dataset at ``folder``: ``label_names``, ``cases`` (dicts with ``case_id``,
    ``shape``, ``reviewed_slices``, ``image_sha256``: the manifest's for an export) and ``foreign`` (True for a
    dataset made elsewhere: an nnU-Net or Decathlon folder, a MONAI datalist, images/ + masks/, read as the trainer
    reads it; the shape of its first case only, from its label file). None when it is not (yet) a dataset."""
    from ..data.manifest import JOURNAL, read_manifest

    path = Path(folder).expanduser() if folder else None
    try:
        manifest = read_manifest(path) if path is not None and path.is_dir() else None
        if manifest is not None:
            return {"label_names": list(manifest.get("label_names") or []), "cases": list(manifest["cases"]),
                    "foreign": False}
        if path is None or not path.exists() or (path / JOURNAL).exists():  # (an export's: reading it would wait)
            return None
        entries = [path, *sorted(itertools.islice(path.iterdir(), 200))] if path.is_dir() else [path]
        stamp = tuple((p.name, p.stat().st_mtime_ns) for p in entries)  # (a file added or rewritten: read again)
    except Exception:  # the run says what is wrong
        return None
    return _foreign_summary(str(path), stamp)


@functools.lru_cache(maxsize=4)
def _foreign_summary(folder: str, stamp: tuple) -> dict | None:
    """A dataset made elsewhere, read once per state of its folder (``stamp``: the names and times of its entries);
    None when it is no dataset."""
    from ..data.dataset import read_dataset

    try:
        ds = read_dataset(folder)
        first = tuple(ds.cases[0].load_labels().shape)
    except Exception:  # the run says what is wrong
        return None
    cases = [{"case_id": c.case_id, "shape": list(first) if k == 0 else None, "reviewed_slices": None}
             for k, c in enumerate(ds.cases)]
    return {"label_names": list(ds.label_names), "cases": cases, "foreign": True}


def more_labels_text(summary: dict | None) -> str:
    """What to add when a run learnt nothing: reviewed slices of an export, labelled cases of a dataset made
    elsewhere (nobody reviewed slices there)."""
    if summary and summary.get("foreign"):
        return "add labelled cases that hold the object to the dataset"
    return "review more slices that hold the object"


class ValidationField:
    """Mixin of the Fine-tune panel (``dataset_edit``, ``val_edit``)."""

    def _summary(self) -> dict | None:
        return dataset_summary(folder_text(self.dataset_edit))

    def _cases(self) -> list[dict] | None:
        """The dataset's cases (the manifest's entries; a dataset made elsewhere: as the trainer reads it), None when
        it is not (yet) a dataset. Exports of one image count once, their reviewed slices together, as the trainer
        takes them (training/repeats.py)."""
        summary = self._summary()
        if summary is None:
            return None
        merged: dict[str, dict] = {}
        for c in summary["cases"]:
            key = c.get("image_sha256") or c["case_id"]
            if key in merged:
                a, b = merged[key].get("reviewed_slices"), c.get("reviewed_slices")
                c = {**c, "reviewed_slices": None if a is None or b is None else sorted({*a, *b})}
            merged[key] = c
        return list(merged.values())

    def _validation_field(self) -> None:
        """*Validation slices* are axial slices of a volume; of one 2D image, its rows (the field says so);
        a dataset of several images validates on whole images (the field is off)."""
        summary = self._summary()
        cases = self._cases() or []
        kind = 0 if len(cases) > 1 else 2 if cases and len(cases[0].get("shape") or ()) == 2 else 3
        self.val_edit.label = "Validation rows" if kind == 2 else "Validation slices"
        self.val_edit.tooltip = VAL_TIP["3 made elsewhere" if kind == 3 and summary and summary["foreign"] else kind]
        self.val_edit.enabled = kind != 0 and not self.running()

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
    "dataset_edit": "A dataset exported by Correct and export > Export (default: the last export), or one made "
                    "elsewhere: an nnU-Net or Decathlon folder, a MONAI datalist, images/ with labels/ or masks/",
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
