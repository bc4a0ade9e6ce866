"""Long jobs and the user meanwhile, in the tabbed dock of a real viewer, on the real nuclei image (a crop): a
Segment run while Fine-tune trains, an Export while both run, the form changed while a job runs, Cancel then
Run at once. A job never freezes napari or stalls another panel, and its messages name what it used."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
from test_finetune_budget import _dataset as _volume_dataset
from test_finetune_budget import _slow_steps

pytestmark = pytest.mark.gui

DATA = Path("/work/shared/data/nuclei2d")
if not DATA.is_dir():  # (a fresh clone: the bundled sample is a crop of the same image)
    from napari_attnseg._paths import samples_dir

    DATA = None


def _nuclei() -> tuple[np.ndarray, np.ndarray]:
    """A 256 x 256 crop of the real nuclei image and its reference labels (> 0)."""
    if DATA is not None:
        image, labels = tifffile.imread(DATA / "image.tif"), tifffile.imread(DATA / "labels.tif")
    else:
        image = tifffile.imread(samples_dir() / "nuclei2d_image.tif")
        labels = (image > np.percentile(image, 80)).astype(np.uint8)
    return image[:256, :256].astype(np.float32), (labels[:256, :256] > 0).astype(np.uint8)


def _finetuning(dock, tmp_path, monkeypatch):
    """The Fine-tune tab training a tiny model on a tiny volume dataset (slowed steps: it runs ~30 s)."""
    ds, start = _volume_dataset(tmp_path)
    _slow_steps(monkeypatch, 0.1)
    _, d = dock
    ft = d.finetune
    ft.add_model("start", str(start))
    ft.dataset_edit.value = str(ds)
    ft.model_combo.value = "start"
    ft.minutes_spin.value = 0.5
    return ft


def _gate_segment(monkeypatch, skip=0):
    """The Segment run's batches (nuclei-2d's 128-px tiles, not the fine-tuning's 32-px patches) after the first
    ``skip`` wait for ``gate``; ``entered`` is set when one does (a long run, without depending on this machine)."""
    from napari_attnseg.inference import engine

    gate, entered = threading.Event(), threading.Event()
    real, seen = engine._run_batch, []

    def gated(net, x, *args, **kwargs):
        if x.shape[-1] >= 128:
            seen.append(1)
            if len(seen) > skip:
                entered.set()
                gate.wait(60)
        return real(net, x, *args, **kwargs)

    monkeypatch.setattr(engine, "_run_batch", gated)
    return gate, entered


def _export_form(viewer, corr, tmp_path, name="cells2"):
    image, labels = _nuclei()
    viewer.add_image(image, name=name)
    viewer.add_labels(labels, name=f"{name} mask")
    corr.image_combo.value = name
    corr.labels_combo.value = f"{name} mask"
    corr.dataset_edit.value = str(tmp_path)
    corr.class_names_edit.value = "background, nucleus"


def test_an_export_runs_while_finetune_and_segment_run_on_two_cores(dock, qtbot, tmp_path, monkeypatch):
    """Fine-tuning held one of the pool's threads (one per core) for its whole budget and a Segment run another:
    on a 2-core machine the pool was full, the Export waited behind them, and napari froze (painting its progress
    bars waits on the same pool under Qt 5) until the Segment run ended. A long job now brings its own thread."""
    from qtpy.QtCore import QThreadPool

    import napari_attnseg.data.export as export_module

    pool = QThreadPool.globalInstance()
    cores = pool.maxThreadCount()
    pool.setMaxThreadCount(2)  # a 2-core machine
    viewer, d = dock
    ft, seg, corr = _finetuning(dock, tmp_path, monkeypatch), d.segment, d.correct
    gate, entered = _gate_segment(monkeypatch)
    started = threading.Event()
    real_export = export_module.export_case
    monkeypatch.setattr(export_module, "export_case", lambda *a, **k: (started.set(), real_export(*a, **k))[1])
    try:
        assert ft.run() is not None
        qtbot.waitUntil(lambda: ft.status.value.startswith("epoch 1"), timeout=60000)
        viewer.add_image(_nuclei()[0], name="cells")
        seg.image_combo.value = "cells"
        seg.model_combo.value = "nuclei-2d"
        assert seg.run() is not None
        qtbot.waitUntil(entered.is_set, timeout=30000)  # the Segment run is on its tiles, and stays there
        _export_form(viewer, corr, tmp_path / "export")
        assert corr.export() is not None
        qtbot.waitUntil(started.is_set, timeout=15000)
        # before the fix the export (and napari) waited until the fine-tuning ended and gave its thread back
        assert not ft.run_button.enabled and not seg.run_button.enabled, "the export waited for the other jobs"
        qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=30000)
        assert (tmp_path / "export" / "manifest.json").is_file()
    finally:
        gate.set()
        ft.cancel()
        qtbot.waitUntil(lambda: ft.run_button.enabled and seg.run_button.enabled, timeout=60000)
        pool.setMaxThreadCount(cores)
    assert pool.maxThreadCount() == cores  # each long job gave its thread back
    assert "cells mask" in viewer.layers and "nuclei-2d" in seg.status.value


def test_segment_and_export_leave_a_running_finetune_form_alone(dock, qtbot, tmp_path, monkeypatch, notifications):
    """A Segment run's new mask and an Export during fine-tuning switched the Fine-tune tab's start model, name,
    output folder (to nuclei-2d's) while it trained from 'start', and its end said 'No epoch beat nuclei-2d'.
    Now the form keeps the run's settings while it runs; the export and the new default follow at its end."""
    viewer, d = dock
    ft, seg, corr = _finetuning(dock, tmp_path, monkeypatch), d.segment, d.correct
    dataset = ft.dataset_edit.value
    corr.last_export_dir = str(dataset)  # (exported from this tab: the Fine-tune tab follows its next export)
    assert ft.run() is not None
    form = (ft.model_combo.value, ft.name_edit.value, str(ft.out_edit.value), ft.description_edit.value)
    assert form[0] == "start"
    qtbot.waitUntil(lambda: ft.status.value.startswith("epoch 1"), timeout=60000)
    viewer.add_image(_nuclei()[0], name="cells")
    seg.image_combo.value = "cells"
    seg.model_combo.value = "nuclei-2d"
    with qtbot.waitSignal(seg.run_done, timeout=120000) as done:
        seg.run()
    assert done.args == [True] and "cells mask" in viewer.layers
    assert (ft.model_combo.value, ft.name_edit.value, str(ft.out_edit.value), ft.description_edit.value) == form
    _export_form(viewer, corr, tmp_path / "round2")
    assert corr.export() is not None
    qtbot.waitUntil(lambda: corr.export_button.enabled, timeout=30000)
    assert ft.dataset_edit.value == dataset and ft.model_combo.value == "start"  # not while it runs
    qtbot.waitUntil(lambda: ft.run_button.enabled, timeout=120000)
    said = [str(n.message) for n in notifications]
    assert not any("nuclei-2d" in m for m in said if "beat" in m), said
    assert str(ft.dataset_edit.value) == str(tmp_path / "round2")  # the export is followed once the run ended


def test_cancel_then_run_at_once_and_a_model_changed_while_running(dock, qtbot, monkeypatch):
    """Run again after Cancel: the bar started at the cancelled run's 8 of 25 tiles (a new run looked half done
    until its first tiles); the status of a run whose model was changed in the list meanwhile named no model,
    so the list's new choice looked like the one that made the mask."""
    viewer, d = dock
    seg = d.segment
    viewer.add_image(_nuclei()[0], name="cells")
    seg.image_combo.value = "cells"
    seg.model_combo.value = "nuclei-2d"
    gate, entered = _gate_segment(monkeypatch, skip=1)  # 9 tiles: a batch of 8 done, the last one waits
    seg.run()
    qtbot.waitUntil(lambda: entered.is_set() and seg.progress_bar.value == 8, timeout=30000)
    seg.cancel_button.native.click()
    gate.set()
    qtbot.waitUntil(lambda: seg.run_button.enabled, timeout=30000)
    assert "Cancelled" in seg.status.value and "cells mask" not in viewer.layers
    assert (seg.progress_bar.value, seg.progress_bar.max) == (8, 9)
    gate.clear()
    entered.clear()
    seg.run_button.native.click()  # at once
    assert seg.progress_bar.value == 0 and not seg.run_button.enabled
    qtbot.waitUntil(entered.is_set, timeout=30000)  # (the second batch: the first one ran, ungated)
    seg.model_combo.value = "nuclei-2d-prompt"  # chosen for the next run, while this one goes on
    with qtbot.waitSignal(seg.run_done, timeout=60000) as done:
        gate.set()
    assert done.args == [True]
    assert "nuclei-2d," in seg.status.value, seg.status.value
    assert viewer.layers["cells mask"].metadata["attnseg"]["model"] == "nuclei-2d"


def test_closing_the_viewer_during_an_export_writes_the_case_without_a_traceback(dock, qtbot, tmp_path, monkeypatch):
    """The viewer closed while an Export ran: the worker's end wrote into the deleted panel ('wrapped C/C++ object of
    type QProgressBar has been deleted'); the case is written and nothing is raised."""
    import sys
    import time

    import napari_attnseg.data.export as export_mod
    real = export_mod.export_case
    started = threading.Event()

    def slow(*args, **kwargs):
        started.set()
        time.sleep(1.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(export_mod, "export_case", slow)
    raised = []
    monkeypatch.setattr(sys, "excepthook", lambda *exc: raised.append(exc[1]))  # where PyQt sends a slot's error
    image, labels = _nuclei()
    viewer, docked = dock
    viewer.add_image(image[:128, :128], name="cells")
    viewer.add_labels((labels[:128, :128] > 0).astype(np.uint8), name="cells mask")
    panel = docked.correct
    panel.dataset_edit.value = str(tmp_path / "ds")
    panel.format_combo.value = "tiff"
    worker = panel.export()
    assert worker is not None
    qtbot.waitUntil(started.is_set, timeout=10000)
    with qtbot.waitSignal(worker.finished, timeout=30000):
        viewer.close()
    qtbot.wait(200)
    assert (tmp_path / "ds" / "manifest.json").is_file()
    assert not raised, raised
