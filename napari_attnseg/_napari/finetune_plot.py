"""The Fine-tune panel's live plot: the training loss (left axis) and the validation Dice (right axis, 0-1)
per epoch, with a marker on every point (a one-epoch run shows one point) and whole-epoch ticks.

The lines are made once and only their data change; the canvas redraws when Qt is idle. The margins are
fixed in pixels and set when the canvas is resized (no layout engine runs at every draw: constrained
layout made each epoch's redraw stall the viewer for 0.2-0.6 s).
"""

from __future__ import annotations

import math

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from qtpy.QtWidgets import QSizePolicy

LOSS_COLOR, DICE_COLOR = "C0", "C1"
MARGINS_PX = {"left": 58, "right": 42, "bottom": 38, "top": 8}  # (46: the "loss" title was cut off at the left)


class LossDicePlot:
    """``canvas`` is the Qt widget; ``ax`` the loss axis, ``ax_dice`` the Dice axis; :meth:`show` plots a
    history (dicts with ``epoch``, ``loss``, ``val_dice``; NaN Dice, as in the refit epochs, draws no point)."""

    def __init__(self, min_height: int):
        self.figure = Figure(figsize=(4, 2.2))
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(min_height)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.ax = self.figure.add_subplot(111)
        self.ax_dice = self.ax.twinx()
        (self.loss_line,) = self.ax.plot([], [], "o-", ms=3, color=LOSS_COLOR, label="training loss")
        (self.dice_line,) = self.ax_dice.plot([], [], "s-", ms=3, color=DICE_COLOR, label="validation Dice")
        self.ax.set_xlabel("epoch", fontsize=8)
        self.ax.set_ylabel("loss", fontsize=8, color=LOSS_COLOR)
        self.ax_dice.set_ylabel("Dice", fontsize=8, color=DICE_COLOR)
        self.ax_dice.set_ylim(0, 1.02)
        self.ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole epochs, also for one
        self.ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
        self.placeholder = self.ax.text(0.5, 0.5, "loss and Dice:\ndrawn during a run", transform=self.ax.transAxes,
                                        ha="center", va="center", fontsize=8, color="0.45")
        for axis in (self.ax, self.ax_dice):
            axis.tick_params(labelsize=7)
        self.legend = self.ax.legend(handles=[self.loss_line, self.dice_line], loc="lower left", fontsize=7)
        self.clear()
        self.canvas.mpl_connect("resize_event", lambda *_: self._margins())

    def _margins(self) -> None:
        w, h = self.canvas.width(), self.canvas.height()
        if w > 2 * (MARGINS_PX["left"] + MARGINS_PX["right"]) and h > 2 * (MARGINS_PX["bottom"] + MARGINS_PX["top"]):
            self.figure.subplots_adjust(left=MARGINS_PX["left"] / w, right=1 - MARGINS_PX["right"] / w,
                                        bottom=MARGINS_PX["bottom"] / h, top=1 - MARGINS_PX["top"] / h)

    def clear(self) -> None:
        self.show([])

    def show(self, history: list[dict]) -> None:
        epochs = [h["epoch"] for h in history]
        self.loss_line.set_data(epochs, [h["loss"] for h in history])
        self.dice_line.set_data(epochs, [h.get("val_dice", math.nan) for h in history])
        self.ax.set_xlim(0.5, max(epochs, default=1) + 0.5)
        self.placeholder.set_visible(not history)
        self.legend.set_visible(bool(history))
        if not history:  # no run yet: a plain 0-1 loss axis, not matplotlib's -0.04..0.04 for no data
            self.ax.set_ylim(0.0, 1.0)
        losses = [h["loss"] for h in history if math.isfinite(h["loss"])]
        if losses:
            lo, hi = min(losses), max(losses)
            pad = 0.08 * (hi - lo) or 0.1 * abs(hi) or 0.1
            self.ax.set_ylim(max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad)
        self.canvas.draw_idle()
