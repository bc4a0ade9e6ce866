from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _user_models(tmp_path, monkeypatch):
    """Every test gets its own empty user models folder: the Fine-tune panel proposes its output there and
    `attnseg models` lists it, so no test reads or writes the real one (~/.local/share/napari-attnseg/models).
    The same for the settings file (the Correct panel remembers the last dataset folder there)."""
    monkeypatch.setenv("ATTNSEG_MODELS_DIR", str(tmp_path / "user-models"))
    monkeypatch.setenv("ATTNSEG_SETTINGS_DIR", str(tmp_path / "user-settings"))


@pytest.fixture()
def tiny_checkpoint(tmp_path):
    """A small, untrained 2D attention U-Net saved as a checkpoint (no bundled weights needed)."""
    import torch

    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard

    def make(dims=2, arch="attention_unet", name="tiny", **config):
        torch.manual_seed(0)
        config = config or ({"features": (4, 8, 16, 32, 64)} if arch in ("attention_unet", "unet") else {})
        model = create_model(arch, spatial_dims=dims, **config)
        path = tmp_path / f"{name}-{dims}d.safetensors"
        save_model(model, path, ModelCard(arch="", config={}, name=f"{name}-{dims}d", description="test model",
                                          tile=[32] * dims))
        return path

    return make


@pytest.fixture()
def case():
    """A small float volume and labels thresholded from it (the export tests)."""
    rng = np.random.default_rng(0)
    image = rng.normal(100, 20, (6, 16, 20)).astype(np.float32)
    labels = (image > 110).astype(np.uint8)
    return image, labels


@pytest.fixture()
def notifications():
    """Every notification shown during the test (napari's own manager, as the GUI receives them)."""
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


@pytest.fixture()
def dock(make_napari_viewer):
    """A real viewer with the tabbed dock (Segment, Correct and export, Fine-tune) docked."""
    from napari_attnseg._napari.dock import AttnSegDock

    viewer = make_napari_viewer()
    dock = AttnSegDock(viewer)
    viewer.window.add_dock_widget(dock, name="Attention segmentation")
    return viewer, dock


@pytest.fixture()
def segment_panel(make_napari_viewer, monkeypatch):
    """A viewer and a Segment panel whose error notifications are collected in ``panel.messages``."""
    from napari_attnseg._napari import _common, pixel_tool
    from napari_attnseg._napari import segment_widget as sw

    messages = []
    monkeypatch.setattr(sw, "notify_error", messages.append)
    monkeypatch.setattr(_common, "show_error", messages.append)
    monkeypatch.setattr(pixel_tool, "notify_error", messages.append)
    viewer = make_napari_viewer()
    w = sw.SegmentWidget(viewer)
    w.messages = messages
    return viewer, w


@pytest.fixture()
def nuclei_click_panel(make_napari_viewer):
    """A viewer with a 192 x 192 nuclei crop, an empty mask and a Correct panel in click mode with the bundled
    `nuclei-2d-prompt`: (viewer, panel, mask layer, reference labels); skipped without the model."""
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image
    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d-prompt" not in bundled_models():
        pytest.skip("no bundled promptable model")
    image = read_image(samples_dir() / "nuclei2d_image.tif").data[:192, :192]
    ref = read_image(samples_dir() / "nuclei2d_labels.tif").data[:192, :192]
    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells")
    mask = viewer.add_labels(np.zeros(image.shape, np.uint8), name="cells mask")
    corr = CorrectWidget(viewer)
    corr.prompt.model_combo.value = "nuclei-2d-prompt"
    corr.prompt.enable_box.value = True
    return viewer, corr, mask, ref


@pytest.fixture()
def volume_run(make_napari_viewer, qtbot, tiny_checkpoint):
    """A viewer with the docked panels, a 10 x 32 x 32 volume "vol" (4 mm slices) and a tiny 2D model's run on it:
    (viewer, dock)."""
    import numpy as np

    from napari_attnseg._napari.dock import AttnSegDock

    viewer = make_napari_viewer()
    dock = AttnSegDock(viewer)
    viewer.window.add_dock_widget(dock, name="Attention segmentation")
    viewer.add_image(np.random.default_rng(3).random((10, 32, 32)).astype(np.float32), name="vol",
                     scale=(4.0, 1.0, 1.0))
    dock.segment.add_model(tiny_checkpoint(2))
    with qtbot.waitSignal(dock.segment.run_done, timeout=60000):
        dock.segment.run_button.native.click()
    return viewer, dock


@pytest.fixture()
def opened(make_napari_viewer, monkeypatch):
    """A viewer, after the plugin's first use, and File > Open of a path (napari's reader question answered with
    napari's own reader, recorded: it must not be asked)."""
    from napari._qt.dialogs import qt_reader_dialog

    from napari_attnseg._napari import io_hooks

    asked: list[str] = []

    def choose(self):
        asked.append(self._current_file)
        return "napari builtins", False

    monkeypatch.setattr(qt_reader_dialog.QtReaderDialog, "get_user_choices", choose)
    viewer = make_napari_viewer()
    io_hooks.activate()  # what the plugin's first use does

    def open_(path) -> list:
        before = len(viewer.layers)
        viewer.window._qt_viewer._qt_open([str(path)], stack=False)  # File > Open / drag and drop
        assert asked == []
        return list(viewer.layers)[before:]

    open_.viewer = viewer
    return open_
