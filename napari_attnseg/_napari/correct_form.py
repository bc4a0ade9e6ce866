"""The Correct panel's form: the mask and image choice, the click-to-fix controls, and the *Helpers*,
*Review* and *Export for fine-tuning* sections with their magicgui fields and buttons.

:class:`CorrectForm` is a mixin of :class:`~.correct_widget.CorrectWidget`; it only builds the widgets
and connects each button to the panel's method of the same action (``fill_holes``, ``mark_range``,
``export``...), which live in the widget module and its mixins.
"""

from __future__ import annotations

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)
from qtpy.QtWidgets import QVBoxLayout

from ..options import DATASET_FORMATS


def _button(text: str, slot, tooltip: str | None = None) -> PushButton:
    b = PushButton(text=text, tooltip=tooltip)
    b.changed.connect(lambda *_: slot())  # a click passes the button's checked state; the slots take none
    return b


def _row(*widgets, label: str = "") -> Container:
    return Container(widgets=list(widgets), layout="horizontal", labels=False, label=label)


class CorrectForm:
    """Builds the fields as attributes of the panel (a QWidget) and lays them out in it."""

    def _build_form(self) -> None:
        self.labels_combo = ComboBox(label="Mask", choices=[])
        self.image_combo = ComboBox(label="Image", choices=[])
        self.class_combo = ComboBox(label="Class", choices=[("all classes", 0)], value=0,
                                    tooltip="The class the helpers work on")
        self.slice_only = CheckBox(text="Current slice only", value=False,
                                   tooltip="On a volume, apply the helpers to the slice on screen and leave the others as they are")
        self.size_spin = SpinBox(min=1, max=10**7, value=20)
        self.radius_spin = SpinBox(label="radius", min=1, max=20, value=1)
        self.keep_button = _button("Keep the object under the cursor (K)", self.keep_at_cursor,
                                   "Remove every other object of that class: for when the largest object is not "
                                   "the one that matters. Point at it in the viewer and press K (or click here).")
        helpers = Container(label="Helpers (Ctrl+Z undoes)", widgets=[
            Container(widgets=[self.class_combo], labels=True), self.slice_only,
            _row(_button("Fill holes", self.fill_holes), _button("Largest component", self.keep_largest)),
            self.keep_button,
            _row(_button("Remove objects smaller than", self.remove_small), self.size_spin),
            _row(_button("Open", self.open_), _button("Close", self.close_), Label(value="radius"), self.radius_spin),
            _button("Interpolate between annotated slices", self.interpolate),
        ], labels=False)

        self.range_edit = LineEdit(value="", tooltip="Axial slice indices, e.g. 10-20,25")
        self.range_edit.native.setPlaceholderText("e.g. 10-20,25")
        self.range_edit.native.returnPressed.connect(self.mark_range)
        self.reviewed_label = Label(value="Reviewed slices: none")
        self.reviewed_label.native.setWordWrap(True)
        self.stats_label = Label(value="")
        self.stats_label.native.setWordWrap(True)
        self.suggest_label = Label(value="")
        review = Container(widgets=[  # two buttons a row: the tab fits a 1600 x 1000 screen's dock
            Label(value="<b>Review</b> (the slice on screen: keys R / Shift+R)"),
            _row(_button("Mark slice (R)", self.mark_current), _button("Unmark (Shift+R)", lambda: self.mark_current(False))),
            _row(_button("Mark all", self.mark_all), _button("Clear", self.clear_reviewed)),
            _row(_button("Mark slices", self.mark_range), self.range_edit),
            _button("Next suggested slice (N)", self.next_suggested,
                    "Jump to the unreviewed slice the model is least sure about (entropy of its probabilities, "
                    "lower next to the slices already reviewed); shows the uncertainty as a hidden layer"),
            self.suggest_label, self.reviewed_label, self.stats_label,
        ], labels=False)

        self.class_names_edit = LineEdit(label="Class names", value="",
                                         tooltip="One name per label value, comma-separated, background first "
                                                 "(e.g. 'background, tumour'). Saved in the dataset and in the card "
                                                 "of a model fine-tuned on it.")
        self.dataset_edit = FileEdit(label="Dataset folder", mode="d", value="")
        self.format_combo = ComboBox(label="Format", choices=list(DATASET_FORMATS), value="nnunet")
        self.case_edit = LineEdit(label="Case id", value="")
        self.case_edit.native.setPlaceholderText("next free case id")
        self.replace_box = CheckBox(text="Replace the case", value=False,
                                    tooltip="Export over the case of this id in the dataset (a next round of corrections "
                                            "on the same image); without it an existing id is refused")
        self.export_button = _button("Export", self.export)
        self.export_bar = ProgressBar(min=0, max=0, visible=False)
        export = Container(widgets=[
            Label(value="<b>Export for fine-tuning</b>"), self.class_names_edit, self.dataset_edit,
            self.format_combo, self.case_edit, self.replace_box, self.export_button, self.export_bar,
        ])
        from .prompt_mode import PromptMode

        self.prompt = PromptMode(self)
        self.form = Container(widgets=[Container(widgets=[self.labels_combo, self.image_combo]), self.prompt.container,
                                       helpers, review, export], labels=False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.form.native)
        layout.addStretch()
