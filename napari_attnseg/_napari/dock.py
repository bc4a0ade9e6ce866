"""The three panels as tabs of one dock, in the order of the loop: segment, correct and export, fine-tune.

Each tab scrolls on its own, so the dock never makes the window taller than the screen.
"""

from __future__ import annotations

from qtpy.QtCore import QSize
from qtpy.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ._common import Undockable
from .correct_widget import CorrectWidget
from .finetune_widget import FinetuneWidget
from .segment_widget import SegmentWidget
from .worklist import real_viewer

TABS = ("Segment", "Correct and export", "Fine-tune")
COMBO_CHARACTERS = 6  # a list (image, mask, model) asks for this many characters, not for its longest entry


def fit_narrow(panel: QWidget) -> None:
    """Let ``panel`` shrink to a narrow dock: its lists ask for ``COMBO_CHARACTERS`` characters instead of their
    longest entry (a layer named after a BIDS file, a fine-tuned model's long name had widened the tab into a
    sideways scroll; the open list still shows entries whole), wrapped notes take the width they are given, and
    side margins and the gaps in a row of buttons are slim. At 1920 x 1080 with 200 % scaling the dock can be
    256 px wide (the Segment and Correct tabs asked for 304 and 319)."""
    for combo in panel.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(COMBO_CHARACTERS)
    for label in panel.findChildren(QLabel):
        if label.wordWrap():
            policy = label.sizePolicy()
            label.setSizePolicy(QSizePolicy.Ignored, policy.verticalPolicy())
    for widget in [panel, *panel.findChildren(QWidget)]:  # slimmer side margins and gaps between a row's buttons
        layout = widget.layout()
        if layout is None:
            continue
        m = layout.contentsMargins()
        layout.setContentsMargins(min(m.left(), 3), m.top(), min(m.right(), 3), m.bottom())
        if isinstance(layout, QHBoxLayout) and layout.spacing() > 4:
            layout.setSpacing(4)


class TabPage(QScrollArea):
    """A tab's scroll area: it scrolls up and down only. Its minimum width is its panel's, so napari never gives the
    dock less (a full test run once laid the dock out 240 px wide at 960 x 540, and the Correct tab, which needs
    247, scrolled sideways: the right ends of its fields were cut off)."""

    def minimumSizeHint(self) -> QSize:
        hint, panel = super().minimumSizeHint(), self.widget()
        if panel is None:
            return hint
        width = panel.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()
        return QSize(max(hint.width(), width), hint.height())


class AttnSegDock(Undockable, QWidget):
    """``segment``, ``correct`` and ``finetune`` are the panels; ``tabs`` the QTabWidget holding them."""

    def __init__(self, napari_viewer):
        super().__init__()
        # (napari's plugin proxy wraps each layer anew at every look-up: the panels compare layers by identity)
        self.viewer = napari_viewer = real_viewer(napari_viewer)
        self.segment = SegmentWidget(napari_viewer)
        self.correct = CorrectWidget(napari_viewer)
        self.finetune = FinetuneWidget(napari_viewer)
        self.tabs = QTabWidget()
        for title, panel in zip(TABS, self.panels()):
            fit_narrow(panel)
            scroll = TabPage()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.NoFrame)
            scroll.setWidget(panel)
            self.tabs.addTab(scroll, title)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        self.segment.run_done.connect(lambda ok: self.finetune.refresh_models())
        self.finetune.follow_segment(self.segment)  # a checkpoint loaded in Segment is a start model too

    def panels(self) -> list[QWidget]:
        return [self.segment, self.correct, self.finetune]

    def show_tab(self, title: str) -> None:
        self.tabs.setCurrentIndex(TABS.index(title))
