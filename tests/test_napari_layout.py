"""The dock as a clinician on a hospital laptop meets it: small screens (1366 x 768, 1280 x 720, 1920 x 1080 at
200 % scaling, which Qt lays out as 960 x 540), every control reachable and explained, headings that show, no
blank gaps, the fine-tune plot readable, and the plugin's keys beside napari's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiomics"
LUNG = SHARED / "lung1_image.nii.gz"


def _pump(n: int = 10) -> None:
    from qtpy.QtWidgets import QApplication

    for _ in range(n):
        QApplication.processEvents()


def _dock_on_screen(make_napari_viewer, size):
    """The viewer's window at a laptop screen's size (logical pixels), a CT open, the dock opened as the
    Plugins menu opens it."""
    from napari_attnseg._paths import samples_dir

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(*size)
    if LUNG.exists():  # the long "before you run" note of a microscopy model on a CT is the widest text
        viewer.open(str(LUNG), plugin="napari-attnseg")
    else:
        viewer.open(str(samples_dir() / "mni152_t1.nii.gz"), plugin="napari-attnseg")
    _, dock = viewer.window.add_plugin_dock_widget("napari-attnseg", "Attention segmentation")
    _pump()
    return viewer, dock


def _controls(panel):
    """The controls of a panel a user can reach with the mouse or Tab (the line edit inside a spin box is
    the spin box)."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit

    out = []
    for w in panel.findChildren((QAbstractButton, QComboBox, QLineEdit, QAbstractSpinBox)):
        if isinstance(w, QLineEdit) and isinstance(w.parentWidget(), (QAbstractSpinBox, QComboBox)):
            continue
        if w.isVisibleTo(panel) and w.focusPolicy() & Qt.TabFocus:
            out.append(w)
    return out


@pytest.mark.parametrize("size", [(960, 540), (1280, 720), (1366, 768)])
def test_every_tab_fits_a_laptop_screen_without_a_sideways_scroll(make_napari_viewer, size):
    """At 1920 x 1080 with 200 % scaling (960 x 540 logical) the Segment and Correct tabs were 45 and 59 px wider
    than the dock (the pixel-attention checkbox, the Review title and the negative-click checkbox did not wrap):
    'Largest component' and the right ends of the fields were cut off behind a sideways scroll bar. The canvas
    keeps a usable width, and the dock never asks for more height than the screen has."""
    from qtpy.QtWidgets import QScrollArea

    viewer, dock = _dock_on_screen(make_napari_viewer, size)
    canvas = viewer.window._qt_viewer.canvas.native
    for i in range(dock.tabs.count()):
        dock.tabs.setCurrentIndex(i)
        _pump()
        area = dock.tabs.currentWidget()
        assert isinstance(area, QScrollArea)
        assert area.horizontalScrollBar().maximum() == 0, (dock.tabs.tabText(i), size,
                                                            area.widget().minimumSizeHint().width(),
                                                            area.viewport().width())
        assert canvas.width() >= size[0] // 4, (dock.tabs.tabText(i), canvas.width())
    assert dock.minimumSizeHint().height() < size[1] // 2


def test_every_control_has_a_tooltip(make_napari_viewer):
    """Buttons such as 'Open', 'Close', 'Interpolate between annotated slices', 'Freeze encoder' or the model and
    device lists said nothing on hover (29 of 57 controls had no tooltip)."""
    _, dock = _dock_on_screen(make_napari_viewer, (1366, 768))
    dock.segment.advanced_box.value = True  # the folded settings too
    dock.correct.prompt.enable_box.enabled = True
    _pump()
    missing = []
    for i, panel in enumerate(dock.panels()):
        dock.tabs.setCurrentIndex(i)
        _pump()
        for w in _controls(panel):
            if not (w.toolTip() or (w.parentWidget() is not None and w.parentWidget().toolTip())):
                missing.append(f"{dock.tabs.tabText(i)}: {type(w).__name__} {getattr(w, 'text', lambda: '')()!r}")
    assert not missing, missing


def test_correct_tab_shows_its_section_headings_and_no_blank_gaps(make_napari_viewer):
    """The 'Helpers (Ctrl+Z undoes)' title was never shown (a magicgui label in a container without labels),
    'Export for fine-tuning' stood centred in the field column, and empty status lines left blank bands
    (70 px between 'New object' and 'Class')."""
    from qtpy.QtWidgets import QLabel

    _, dock = _dock_on_screen(make_napari_viewer, (1366, 768))
    dock.show_tab("Correct and export")
    _pump()
    panel = dock.correct
    labels = [w for w in panel.findChildren(QLabel) if w.isVisibleTo(panel)]
    headings = {}
    for title in ("Click to fix", "Helpers", "Review", "Export for fine-tuning"):
        found = [w for w in labels if w.text().startswith(f"<b>{title}</b>")]
        assert len(found) == 1, (title, [w.text() for w in labels])
        headings[title] = found[0].mapTo(panel, found[0].rect().topLeft()).x()
    assert len(set(headings.values())) == 1, headings  # one left edge: the sections read as sections
    assert not [w for w in labels if not w.text().strip()], "an empty line still takes room"
    dock.correct.prompt.status.value = "Click an object to segment it"
    _pump()
    assert dock.correct.prompt.status.native.isVisibleTo(panel)


def test_folder_fields_leave_room_for_the_path(make_napari_viewer):
    """'Choose directory' took 125 px of the Dataset folder row: 130 px were left for the path at 1366 x 768."""
    from magicgui.widgets import FileEdit

    _, dock = _dock_on_screen(make_napari_viewer, (1366, 768))
    edits = [dock.correct.dataset_edit, dock.finetune.dataset_edit, dock.finetune.out_edit]
    for edit in edits:
        assert isinstance(edit, FileEdit)
        dock.show_tab("Correct and export" if edit is dock.correct.dataset_edit else "Fine-tune")
        _pump()
        assert edit.line_edit.native.width() >= 2 * edit.choose_btn.native.width(), edit.label
        assert edit.choose_btn.tooltip


def _label_inside(plot) -> bool:
    renderer = plot.canvas.get_renderer()
    plot.canvas.draw()
    box = plot.ax.yaxis.label.get_window_extent(renderer)
    return box.x0 >= 0 and plot.ax.yaxis.label.get_visible()


def test_finetune_plot_axis_titles_are_inside_the_canvas(qtbot):
    """At the plot's size in a 400 px dock the 'loss' title was drawn left of the canvas (cut off), and the
    empty plot showed fractional epochs 0.5-1.5 and a loss axis -0.04..0.04 before any run."""
    from napari_attnseg._napari.finetune_form import PLOT_MIN_HEIGHT
    from napari_attnseg._napari.finetune_plot import LossDicePlot

    plot = LossDicePlot(PLOT_MIN_HEIGHT)
    qtbot.addWidget(plot.canvas)
    plot.canvas.resize(390, PLOT_MIN_HEIGHT + 40)
    plot.canvas.show()
    _pump()
    plot.canvas.draw()
    assert all(float(t).is_integer() for t in plot.ax.get_xticks() if 0.5 <= t <= 1.5)
    assert plot.ax.get_ylim()[0] >= 0
    assert _label_inside(plot)
    history = [{"epoch": e, "loss": loss, "val_dice": d}
               for e, loss, d in [(1, 1.2345, 0.41), (2, 0.8123, 0.55), (3, 0.0412, 0.71)]]
    plot.show(history)
    _pump()
    assert _label_inside(plot)
    assert not plot.placeholder.get_visible()


def test_plugin_keys_leave_napari_keys_alone(make_napari_viewer):
    """R, Shift+R, K and N are viewer keys; napari's own keys for the layers people work on here (Labels,
    Points, Image) and the viewer's shortcuts are different keys, so a selected mask keeps its 1-7, E, P, F, L,
    M, [ ] and the plugin's keys still work with it selected. The buttons' tooltips name the keys."""
    from napari.layers import Image, Labels, Points
    from napari.utils.shortcuts import default_shortcuts
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    viewer = make_napari_viewer(show=True)
    mask = viewer.add_labels(np.zeros((5, 32, 32), np.uint8), name="vol mask")
    viewer.add_image(np.zeros((5, 32, 32), np.float32), name="vol")
    _, dock = viewer.window.add_plugin_dock_widget("napari-attnseg", "Attention segmentation")
    _pump()
    ours = {str(k) for k in viewer.keymap}
    assert ours == {"R", "Shift+R", "K", "N"}
    theirs = {str(k) for cls in (Labels, Points, Image) for k in cls.class_keymap}
    from app_model.types import KeyBinding

    for name, bindings in default_shortcuts.items():
        if "shapes" in name or any(w in name for w in ("add_rectangle", "add_ellipse", "add_line", "add_path",
                                                         "add_poly", "direct_mode", "vertex")):
            continue  # the plugin adds no Shapes layer; a selected Shapes layer keeps R for rectangles
        theirs |= {str(KeyBinding.validate(b)) for b in bindings}
    assert not ours & theirs, ours & theirs
    viewer.layers.selection.active = mask
    viewer.dims.set_point(0, 2)
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    QTest.keyClick(canvas, Qt.Key_R)
    _pump(3)
    assert mask.metadata.get("reviewed_slices") == [2] and mask.mode == "pan_zoom"
    texts = {w.text(): w.toolTip() for w in _controls(dock.correct) if hasattr(w, "text")}
    assert "Shapes" in texts["Mark slice (R)"] and "canvas" in texts["Mark slice (R)"]


def test_long_layer_and_model_names_do_not_widen_the_tabs(make_napari_viewer):
    """A layer named after its BIDS file and a long model name: the lists used to ask for their longest entry, so
    the Segment and Correct tabs grew past a 256 px dock (1920 x 1080 at 200 %) into a sideways scroll."""
    name = "sub-01_ses-02_acq-highres_T1w_space-MNI152NLin2009cAsym_desc-preproc"
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((64, 64), np.float32), name=name)
    viewer.add_labels(np.zeros((64, 64), np.uint8), name=f"{name} mask")
    _, dock = viewer.window.add_plugin_dock_widget("napari-attnseg", "Attention segmentation")
    _pump()
    assert dock.segment.image_combo.value == name
    for i in range(dock.tabs.count()):
        dock.tabs.setCurrentIndex(i)
        _pump()
        width = dock.tabs.currentWidget().widget().minimumSizeHint().width()
        assert width <= 256, (dock.tabs.tabText(i), width)


def test_the_dock_cannot_be_made_narrower_than_its_widest_tab(make_napari_viewer):
    """A full test run once laid the dock out 240 px wide at 960 x 540: the Correct tab (247 px) scrolled sideways.
    The tab pages' minimum width is their panel's, so a dock dragged (or laid out) narrow keeps every tab whole."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QDockWidget

    viewer, dock = _dock_on_screen(make_napari_viewer, (960, 540))
    window = viewer.window._qt_window
    ours = [d for d in window.findChildren(QDockWidget) if d.widget() is not None
            and (d.widget() is dock or dock in d.widget().findChildren(type(dock)))]
    assert len(ours) == 1
    window.resizeDocks(ours, [150], Qt.Horizontal)  # the user drags the dock's edge to the right
    _pump()
    for i in range(dock.tabs.count()):
        dock.tabs.setCurrentIndex(i)
        _pump()
        area = dock.tabs.currentWidget()
        assert area.horizontalScrollBar().maximum() == 0, (dock.tabs.tabText(i), area.viewport().width())
