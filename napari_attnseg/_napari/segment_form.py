"""The Segment panel's form: its magicgui fields (image, display window, model, object size, device,
mode, the *Advanced settings* fold, attention options, Run/Cancel, progress) and their layout.

:class:`SegmentForm` is a mixin of :class:`~.segment_widget.SegmentWidget`; it only builds the widgets.
What they do (choices, runs, results) is in the widget module.
"""

from __future__ import annotations

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QVBoxLayout

from .. import options
from ..devices import available_devices
from ..display import WINDOW_PRESETS
from ._common import job_controls

MODES = ("auto", *options.MODES)


class _OnOpen(QObject):
    """Calls ``callback`` before a list opens (a click or a key on it)."""

    def __init__(self, parent, callback):
        super().__init__(parent)
        self._callback = callback

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() in (QEvent.MouseButtonPress, QEvent.KeyPress):
            self._callback()
        return False


def on_open(combo: ComboBox, callback) -> None:
    """Run ``callback`` (cheap: it runs at every click on the list) before ``combo``'s list opens."""
    combo.native.installEventFilter(_OnOpen(combo.native, callback))


class SegmentForm:
    """Builds the fields as attributes of the panel (a QWidget) and lays them out in it."""

    def _build_form(self) -> None:
        self.image_combo = ComboBox(label="Image", choices=[], tooltip="The image layer to segment")
        self.window_combo = ComboBox(label="Display", choices=["(as opened)", *WINDOW_PRESETS], value="(as opened)",
                                     tooltip="Contrast window of the image layer; CT windows are in Hounsfield units")
        self.model_combo = ComboBox(label="Model", choices=[],
                                    tooltip="A bundled model or a loaded checkpoint; what it was trained on is "
                                            "said below")
        self.model_info = Label(label="")
        self.model_info.native.setWordWrap(True)
        # two lines always fit, also when other panels squeeze the dock
        self.model_info.native.setMinimumHeight(2 * self.model_info.native.fontMetrics().lineSpacing() + 6)
        self.load_button = PushButton(text="Load checkpoint...", label="",
                                      tooltip="Add a .safetensors model written by this project (attnseg finetune, "
                                              "the Fine-tune tab) to the list")
        self.diameter_edit = LineEdit(label="Object diameter", value="", visible=False,
                                      tooltip="Typical object diameter in pixels of this image, or 'auto' to estimate "
                                              "it from a first pass; empty: the image is used at its own scale. The "
                                              "image is rescaled to the size the model learnt and the results back.")
        self.diameter_edit.native.setPlaceholderText("px, or auto")
        self.estimate_button = PushButton(text="Estimate the size and run", visible=False,
                                          tooltip="Measure the objects' diameter in a first pass, then segment at "
                                                  "the size the model learnt")
        have = available_devices()
        self.device_combo = ComboBox(label="Device", choices=[(d if d in have or d == "auto" else f"{d} (not available)", d)
                                                              for d in options.DEVICES], value="auto",
                                    tooltip="auto: CUDA, then MPS, then the CPU")
        self.mode_combo = ComboBox(label="Mode", choices=list(MODES), value="auto",
                                   tooltip="2d: one image; 3d: a 3D model on the volume; slices: a 2D model slice "
                                           "by slice; preset from the model and the layer")
        self.advanced_box = CheckBox(text="Advanced settings", value=False,
                                     tooltip="Tile size, overlap, flips, precision and brain extraction")
        self.tile_spin = SpinBox(label="Tile size", min=0, max=1024, value=0,
                                 tooltip="Tile edge in pixels; 0 takes the model card's tiles")
        self.overlap_spin = FloatSpinBox(label="Overlap", min=0.0, max=0.9, step=0.05, value=0.25,
                                         tooltip="The part of a tile shared with its neighbours (blends the seams)")
        self.tta_box = CheckBox(text="Average over flips (2^dims times slower)", value=False,
                                tooltip="Test-time augmentation: predict on every flipped copy and average; "
                                        "smoother boundaries at 2^dims times the time.")
        self.precision_combo = ComboBox(label="Precision", choices=list(options.PRECISIONS), value="auto",
                                        tooltip="auto: bf16 where the CPU/GPU runs it fast, else fp32; fp32 for "
                                                "results that repeat bit for bit")
        self.brain_combo = ComboBox(label="Brain extraction", choices=[("as the model's card says", "auto"),
                                                                       ("on", "on"), ("off", "off")], value="auto",
                                    tooltip="3D brain models: strip skull and scalp first (auto: when the card asks "
                                            "for it and the input has them; never on a CT in Hounsfield units)")
        self.advanced = Container(widgets=[self.tile_spin, self.overlap_spin, self.tta_box, self.precision_combo,
                                           self.brain_combo], visible=False)
        self.attention_box = CheckBox(text="Show attention", value=True,
                                      tooltip="Add the attention maps as heatmap layers '<image> attention <level>': "
                                              "where each attention gate let the image's features through (the finest "
                                              "level shown; select a heatmap to read what 0 and 1 mean)")
        self.pixel_box = CheckBox(text="Where does this pixel look?", value=False, enabled=False,  # (fits a narrow dock)
                                  tooltip="Click a pixel of the image to see its position-attention row as a heatmap "
                                          "(msga models only: off for the others)")
        self.run_button, self.cancel_button, self.progress_bar, self.status = job_controls("Run", 1)
        self.run_button.tooltip = "Segment the image: adds or updates '<image> mask', its probability and attention layers"
        self.cancel_button.tooltip = "Stop the run; the layers stay as they were"
        self.form = Container(widgets=[
            self.image_combo, self.window_combo, self.model_combo, self.model_info, self.load_button,
            self.diameter_edit, self.estimate_button,
            self.device_combo, self.mode_combo, self.advanced_box, self.advanced, self.attention_box,
            self.pixel_box, Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False),
            self.progress_bar,
        ])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.form.native)
        layout.addWidget(self.status.native)  # below the form, the panel's whole width
        layout.addStretch()
