"""The Correct panel's form: the mask and image choice, the click-to-fix controls, and the *Helpers*,
*Review* and *Export for fine-tuning* sections with their magicgui fields and buttons.

:class:`CorrectForm` is a mixin of :class:`~.correct_widget.CorrectWidget`; it only builds the widgets
and connects each button to the panel's method of the same action (``fill_holes``, ``mark_range``,
``export``...), which live in the widget module and its mixins.
"""

from __future__ import annotations

import numpy as np
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
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout

from ..options import DATASET_FORMATS
from ._common import is_deleted, notify_warning, set_choices
from .correct_stats import mask_ignore
from .tiff_masks import IGNORE_NAME


def _button(text: str, slot, tooltip: str | None = None) -> PushButton:
    b = PushButton(text=text, tooltip=tooltip)
    b.changed.connect(lambda *_: slot())  # a click passes the button's checked state; the slots take none
    return b


def _row(*widgets, label: str = "") -> Container:
    return Container(widgets=list(widgets), layout="horizontal", labels=False, label=label)


def _heading(title: str, note: str = "") -> Label:
    """A section's title, left in the panel (in a container without labels, so it is shown and not indented)."""
    return _wrapping(Label(value=f"<b>{title}</b>" + (f" {note}" if note else "")))


def _wrapping(label: Label) -> Label:
    """A label that wraps (it never widens the tab) at the panel's whole width (left to itself a wrapping
    QLabel took a third of it, and its second line was cut off)."""
    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
    return label


class StatusLine(Label):
    """A wrapping status line that takes no room while it says nothing (an empty line left a blank band)."""

    def __init__(self, value: str = "", **kwargs):
        super().__init__(value=value, **kwargs)
        _wrapping(self)
        self.visible = bool(str(value).strip())
        self._built = True

    def set_value(self, value) -> None:
        super().set_value(value)
        if getattr(self, "_built", False):  # (magicgui sets the value once while building, before visible works)
            self.visible = bool(str(value).strip())


def tighten(container: Container, top: bool = True) -> None:
    """No margins inside the form's rows and sections: magicgui's 9 px around every nested container added 18 px
    to each row (the Correct tab was 1143 px tall). The sections keep a little room above their titles."""
    for w in container:
        if isinstance(w, Container) and not isinstance(w, FileEdit):
            w.margins = (0, 6, 0, 6) if top else (0, 0, 0, 0)
            tighten(w, top=False)


def browse_button(edit: FileEdit, what: str) -> None:
    """A short button beside a folder field ("Choose directory" took a third of the row) and tooltips."""
    edit.choose_btn.text = "Browse..."
    edit.choose_btn.tooltip = f"Choose the {what} in a file dialog"


SIZE_TIP = ("Size in voxels (pixels in a 2D image): objects with fewer voxels are removed; on a volume an object is "
            "connected through the slices")
RADIUS_TIP = ("Radius of Open and Close in pixels of the finest axis; the ball is round in the layer's units (its "
              "scale), so on thick slices it stays in the slice")
_SHORT = {"millimeter": "mm", "micrometer": "um", "nanometer": "nm", "centimeter": "cm", "meter": "m"}


class CorrectForm:
    """Builds the fields as attributes of the panel (a QWidget) and lays them out in it."""

    _auto_dataset = ""  # the dataset folder proposed, not typed (the settings' last export, or another panel's)

    def _build_form(self) -> None:
        self.labels_combo = ComboBox(label="Mask", choices=[],
                                     tooltip="The Labels layer to correct and export (a model's '<image> mask' is "
                                             "chosen as soon as a run adds it)")
        self.image_combo = ComboBox(label="Image", choices=[],
                                    tooltip="The image the mask belongs to: the clicks read it and the export "
                                            "writes it beside the mask")
        self.class_combo = ComboBox(label="Class", choices=[("all classes", 0)], value=0,
                                    tooltip="The class the helpers work on")
        self.slice_only = CheckBox(text="Current slice only", value=False,
                                   tooltip="On a volume, apply the helpers to the slice on screen and leave the others as they are")
        self.size_spin = SpinBox(min=1, max=10**7, value=20, tooltip=SIZE_TIP)
        self.radius_spin = SpinBox(label="radius", min=1, max=20, value=1, tooltip=RADIUS_TIP)
        # the units shown beside the boxes (they were only in tooltips, and the radius's said voxels: it is pixels of
        # the finest axis, the ball round in mm, so on 5 mm CT slices radius 2 stays in the slice)
        self.size_unit, self.radius_unit = Label(value="voxels"), Label(value="px")
        for box in (self.size_spin, self.radius_spin):
            box.changed.connect(lambda *_: self._describe_units(getattr(self, "_watched", None)))
        self.keep_button = _button("Keep object at cursor (K)", self.keep_at_cursor,
                                   "Remove every other object of that class: for when the largest object is not "
                                   "the one that matters. Point at it in the viewer and press K (or click here).")
        helpers = Container(widgets=[
            _heading("Helpers", "(on the mask above; Ctrl+Z undoes)"),
            Container(widgets=[self.class_combo], labels=True), self.slice_only,
            _row(_button("Fill holes", self.fill_holes, "Fill the holes inside the objects of the class; on a volume "
                                                        "slice by slice, as people draw (a hole enclosed in a slice "
                                                        "is filled even where it opens on the next slice)"),
                 _button("Largest component", self.keep_largest,
                         "Keep only the largest connected object of the class")),
            self.keep_button,
            _row(_button("Remove <", self.remove_small,  # (+ the spin box and 'voxels': "Remove < 20 voxels", in a 256 px dock)
                         "Remove the objects of the class with fewer voxels than the number beside"), self.size_spin,
                 self.size_unit),
            _row(_button("Open", self.open_, "Morphological opening with the radius beside: removes specks and "
                                             "thin spurs"),
                 _button("Close", self.close_, "Morphological closing with the radius beside: fills small gaps "
                                               "and notches"),
                 self.radius_spin, self.radius_unit),
            _button("Interpolate between slices", self.interpolate,
                    "Fill the slices between annotated slices by shape interpolation; the reviewed slices stay "
                    "as they are"),
        ], labels=False)

        self.range_edit = LineEdit(value="", tooltip="Axial slice indices, e.g. 10-20,25; Enter marks them")
        self.range_edit.native.setPlaceholderText("e.g. 10-20,25")
        self.range_edit.native.returnPressed.connect(self.mark_range)
        self.reviewed_label = _wrapping(Label(value="Reviewed slices: none"))
        self.stats_label = StatusLine()
        self.sizes_label = StatusLine()  # 'Mask: tumour 12.4 mL (8,312 voxels)', kept up to date with the edits
        self.suggest_label = StatusLine()
        self.save_label = StatusLine()  # where Save mask wrote the mask, with how many reviewed slices
        keys = ("the viewer's canvas takes the keys (click the image first); a selected Shapes layer keeps R for "
                "its rectangles")
        review = Container(widgets=[  # two buttons a row: the tab fits a narrow dock
            _heading("Review", "(the slice on screen: keys R / Shift+R)"),
            _row(_button("Mark slice (R)", self.mark_current,
                         "Mark the axial slice on screen reviewed: only reviewed slices are exported as labels, the "
                         f"others as 'ignore'. Key R: {keys}."),
                 _button("Unmark (Shift+R)", lambda: self.mark_current(False),
                         f"Take the mark off the slice on screen. Key Shift+R: {keys}.")),
            _row(_button("Mark all", self.mark_all, "Mark every slice reviewed: for a volume you checked whole"),
                 _button("Clear", self.clear_reviewed, "Take the mark off every slice")),
            _row(_button("Mark slices", self.mark_range, "Mark the slices typed beside (e.g. 10-20,25) reviewed"),
                 self.range_edit),
            _button("Next suggested slice (N)", self.next_suggested,
                    "Jump to the unreviewed slice the model is least sure about (entropy of its probabilities, "
                    "lower next to the slices already reviewed); shows the uncertainty as a hidden layer. Key N: "
                    "the viewer's canvas takes the keys."),
            self.suggest_label, self.reviewed_label,
            _button("Save mask...", self.save_mask,
                    "Save the mask as NIfTI or TIFF with its reviewed slices, class names (NIfTI) and spacing, as File "
                    "> Save does with this plugin's file types (napari's default TIFF type drops them)"),
            self.save_label, self.sizes_label, self.stats_label,
        ], labels=False)

        self.class_names_edit = LineEdit(label="Class names", value="",
                                         tooltip="One name per label value, comma-separated, background first "
                                                 "(e.g. 'background, tumour'). Saved in the dataset and in the card "
                                                 "of a model fine-tuned on it.")
        self.dataset_edit = FileEdit(label="Dataset folder", mode="d", value="",
                                     tooltip="The dataset to add this case to (a new folder is made a dataset); the "
                                             "Fine-tune tab then trains on it")
        browse_button(self.dataset_edit, "dataset folder")
        self.format_combo = ComboBox(label="Format", choices=list(DATASET_FORMATS), value="nnunet",
                                     tooltip="nnunet: an nnU-Net v2 raw dataset; monai: NIfTI with a Decathlon "
                                             "datalist.json; tiff: TIFF image and label pairs (2D work)")
        self.case_edit = LineEdit(label="Case id", value="",
                                  tooltip="The case's name in the dataset; empty: the next free id")
        self.case_edit.native.setPlaceholderText("next free case id")
        self.replace_box = CheckBox(text="Replace the case", value=False,
                                    tooltip="Export over the case of this id in the dataset (a next round of corrections "
                                            "on the same image); without it an existing id is refused")
        self.foreground_box = CheckBox(text="One class (labels > 0)", value=False,
                                       tooltip="Export every labelled pixel as one foreground class: a mask of "
                                               "instance ids (one value per nucleus, as Cellpose or StarDist write)")
        self.export_button = _button("Export", self.export,
                                     "Write the image and the mask into the dataset folder (unreviewed slices of a "
                                     "volume as 'ignore')")
        self.export_bar = ProgressBar(min=0, max=0, visible=False)
        export = Container(widgets=[
            _heading("Export for fine-tuning"),
            Container(widgets=[self.class_names_edit, self.dataset_edit, self.format_combo, self.case_edit]),
            self.replace_box, self.foreground_box, self.export_button, self.export_bar,
        ], labels=False)
        from .prompt_mode import PromptMode

        self.prompt = PromptMode(self)
        self._polish_prompt()
        self.form = Container(widgets=[Container(widgets=[self.labels_combo, self.image_combo]), self.prompt.container,
                                       helpers, review, export], labels=False)
        tighten(self.form)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.form.native)
        layout.addStretch()

    def _describe_units(self, layer) -> None:
        """The size and radius tooltips in the chosen mask's own units: what N voxels and a radius of r pixels are
        in mm (mm^3) and how many slices the ball reaches, on a thick-slice CT or MRI."""
        scale = [abs(float(v)) or 1.0 for v in getattr(layer, "scale", ())]
        if len(scale) == 3 and getattr(self, "_time_lapse", lambda _: False)(layer):  # (helpers work frame by frame:
            scale = scale[1:]  # a frame's pixels, um², no slices reached; the time step was counted in 'um³')
        if not scale or all(v == 1.0 for v in scale):
            self.size_spin.tooltip, self.radius_spin.tooltip = SIZE_TIP, RADIUS_TIP
            return
        units = [str(u) for u in getattr(layer, "units", ())] or ["pixel"]
        unit = _SHORT.get(units[-1], "" if units[-1] == "pixel" else units[-1]) or "units"
        voxel, r, cubed = float(np.prod(scale)), int(self.radius_spin.value), unit + ("³" if len(scale) == 3 else "²")
        one = "voxel" if len(scale) == 3 else "pixel"  # (a 2D mask's: pixels, um²)
        self.size_spin.tooltip = (f"{SIZE_TIP}. On {layer.name} one {one} is {' x '.join(f'{v:g}' for v in scale)} "
                                  f"{unit}, {voxel:.3g} {cubed}: {self.size_spin.value} {one}s = "
                                  f"{self.size_spin.value * voxel:.3g} {cubed}")
        reach = (f", reaching {int(r * min(scale) / scale[0] + 1e-6)} slices up and down ({scale[0]:g} {unit} "
                 "slices)" if len(scale) == 3 else "")
        self.radius_spin.tooltip = (f"{RADIUS_TIP}. On {layer.name}: {r} px = {r * min(scale):.3g} {unit}{reach}")

    def follow_export(self, folder: str, previous: str | None, model=None) -> None:
        """Another Correct panel of the viewer exported to ``folder``: proposed here too (its format and case id from
        the settings it was just remembered in), unless a folder was typed here. The dock closed while its export ran
        and opened again: the new panel had read the settings when it was built, before the export finished, and went
        on proposing nothing, or the day before's folder, while its Fine-tune tab followed the export."""
        from ..settings import last_export
        from .correct_export import folder_text

        if folder_text(self.dataset_edit) not in ("", previous or "", self._auto_dataset, self.last_export_dir or ""):
            return
        self.dataset_edit.line_edit.value = self._auto_dataset = self.last_export_dir = folder
        if (last := last_export()) is not None and last["dataset"] == folder:
            if last.get("format") in self.format_combo.choices:
                self.format_combo.value = last["format"]
            self._last_case_hint(last.get("case_id"))

    def _polish_prompt(self) -> None:
        """The click-to-fix controls as laid out here: tooltips, a negative
        checkbox that fits a narrow dock, and a status line that takes no room while empty."""
        p = self.prompt
        box = p.container
        _wrapping(box[0])
        p.model_combo.tooltip = ("A promptable model (nuclei-2d-prompt, or one fine-tuned with --prompts); one of the "
                                 "image's dimensionality is picked")
        p.enable_box.tooltip = ("Click objects in the viewer to segment or correct them one at a time; adds and "
                                "selects the '<image> prompts' Points layer. Off without a promptable model.")
        p.negative_box.text = "Negative clicks (or Shift+click)"
        p.negative_box.tooltip = ("Clicks mark where the object is not; a Shift+click or a right click does that "
                                  "without this box")
        p.undo_button.tooltip = ("Remove the last click and revert its change to the mask (Ctrl+Z while the prompts "
                                 "layer is selected)")
        p.new_button.tooltip = "Forget the clicks: the next click starts a new object"
        i = box.index(p.status)
        box.remove(p.status)  # (prompt_mode writes only p.status.value)
        p.status = StatusLine()
        box.insert(i, p.status)


class ClassList:
    """The helpers' *Class* list follows the chosen mask's label values: built when the mask is chosen (or its data
    replaced), and grown when a brush stroke, a click or a helper writes a value above the last one listed, read
    from the edit's own values (its paint event), never from the volume. It was built only when another mask was
    chosen: a class added by painting or clicking could not be picked. The 'ignore' value of a label file an export
    wrote (slices nobody reviewed) is no class: never listed. The *Class names* field follows the mask's names too
    (:meth:`_take_names`). Needs the panel's ``class_combo``, ``class_names_edit``, ``_auto_names`` and ``_watched``
    (the chosen mask)."""

    _class_top = 0  # the highest value listed
    _class_names: list[str] = []  # the mask's class names (its card's or metadata's), background first

    def _take_names(self, layer, rerun: bool = False) -> None:
        """The class names of ``layer`` (its metadata's, else its features') in the *Class names* field, unless names
        were typed there (kept), and in the Class list. ``rerun``: its data were replaced, e.g. a run updated it in
        place with its model's names (the field kept the last model's: an export named the new labels with them);
        names typed for it stay (in its metadata too, for File > Save), and a model of other classes is said."""
        classes = [str(c) for c in layer.metadata.get("class_names") or []] or (
            [str(c) for c in layer.features["class"] if str(c) != IGNORE_NAME]
            if "class" in getattr(layer, "features", {}) else [])
        names, typed = ", ".join(dict.fromkeys(classes)), self.class_names_edit.value.strip()
        if typed in ("", self._auto_names, names):  # never replace typed names
            with self.class_names_edit.changed.blocked():
                self.class_names_edit.value = names
        elif rerun and all(own := [n.strip() for n in typed.split(",")]):
            if names and names != self._auto_names:
                notify_warning(f"{layer.name} now holds a prediction of the classes {names}; the class names you "
                               f"typed ({typed}) are kept for its export and File > Save. If its label values are "
                               "the model's classes, type their names in Class names (Export for fine-tuning).")
            layer.metadata["class_names"] = classes = own
        self._auto_names = names
        self._list_classes(layer, classes)  # (and as values are painted: _values_painted)

    def _list_classes(self, layer, classes: list[str] | None = None, top: int | None = None) -> None:
        """List the classes 1..top of ``layer`` (``top``: the highest value; default read from its data), keeping
        the chosen one; never its 'ignore' value."""
        if classes is not None:
            self._class_names = classes
        classes = self._class_names
        if top is None:
            top = int(np.asarray(layer.data).max(initial=0))
        top = max(len(classes) - 1, top)
        self._describe_units(layer)  # (the mask chosen, or its data replaced)
        ignore = mask_ignore(layer)  # (a reopened label file's unreviewed slices: listed, it was "2: class 2")
        values = [i for i in range(1, top + 1) if i != ignore]
        set_choices(self.class_combo, [("all classes", 0), *(
            (f"{i}: {classes[i] if i < len(classes) else f'class {i}'}", i) for i in values)])
        self._class_top = top

    def _follow_values(self, layer, on: bool) -> None:
        for name, slot in (("paint", self._values_painted), ("data", self._values_replaced)):
            ev = getattr(layer.events, name, None)
            if ev is not None:
                (ev.connect if on else ev.disconnect)(slot)

    def _values_painted(self, event=None) -> None:
        """An edit of the chosen mask (napari's history atoms: a brush's value, a click's or helper's values)."""
        top = 0
        for atom in getattr(event, "value", None) or []:
            new = atom.new_value if hasattr(atom, "new_value") else atom[2]
            top = max(top, int(np.max(np.asarray(new), initial=0)))
        if top > self._class_top and self._watched is not None:
            self._list_classes(self._watched, top=top)

    def _values_replaced(self, *_) -> None:
        layer = self._watched
        if layer is None:
            return
        self._list_classes(layer)
        # a run updating the mask in place sets its data before its metadata (its model's class names): read next
        QTimer.singleShot(0, lambda: is_deleted(self) or layer is not self._watched or self._take_names(layer, True))
