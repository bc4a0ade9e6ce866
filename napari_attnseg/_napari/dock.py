"""The three panels as tabs of one dock, in the order of the loop: segment, correct and export, fine-tune.

Each tab scrolls on its own, so the dock never makes the window taller than the screen.
"""

from __future__ import annotations

from qtpy.QtWidgets import QFrame, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from ._common import Undockable
from .correct_widget import CorrectWidget
from .finetune_widget import FinetuneWidget
from .segment_widget import SegmentWidget

TABS = ("Segment", "Correct and export", "Fine-tune")


class AttnSegDock(Undockable, QWidget):
    """``segment``, ``correct`` and ``finetune`` are the panels; ``tabs`` the QTabWidget holding them."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.segment = SegmentWidget(napari_viewer)
        self.correct = CorrectWidget(napari_viewer)
        self.finetune = FinetuneWidget(napari_viewer)
        self.tabs = QTabWidget()
        for title, panel in zip(TABS, self.panels()):
            scroll = QScrollArea()
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
