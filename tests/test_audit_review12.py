"""Review of the day's commits (a11f88b..3291627): a run's mask took the reviewed slices of another image's reopened
mask on the same grid; the Correct tab's sizes line listed every instance id of a nuclei mask; a resumed run that
had stopped early trained one more validated epoch before its refit."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from napari_attnseg.checkpoint import save_model
from napari_attnseg.data.export import export_case
from napari_attnseg.model_card import ModelCard
from napari_attnseg.models.registry import create_model
from napari_attnseg.training.config import TrainConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_a_run_does_not_take_the_reviewed_slices_of_another_images_reopened_mask(make_napari_viewer):
    """Two CT crops of one shape and spacing open (two patients); A's corrected mask reopened from its file (reviewed
    slice 3, no image named). A run on B put A's tumour outline on B's slice 3, marked it reviewed and hid A's mask."""
    import nibabel as nib

    from napari_attnseg._napari.round_state import carry_reviewed

    ct = np.asarray(nib.load(DATA / "radiomics" / "lung1_image.nii.gz").dataobj)
    a, b = (np.ascontiguousarray(ct[o:o + 48, o:o + 48, 28:34].T).astype(np.float32) for o in (100, 300))
    viewer = make_napari_viewer()
    viewer.add_image(a, name="A", scale=(5, 0.7, 0.7))
    image_b = viewer.add_image(b, name="B", scale=(5, 0.7, 0.7))
    a_mask = np.zeros(a.shape, np.uint8)
    a_mask[3, 10:30, 10:30] = 1
    reopened = viewer.add_labels(a_mask, name="A seg", scale=(5, 0.7, 0.7),
                                 metadata={"reviewed_slices": [3], "source_path": "/data/A seg.nii.gz"})
    run = viewer.add_labels(np.zeros(b.shape, np.uint8), name="B mask", scale=(5, 0.7, 0.7),
                            metadata={"attnseg_prediction": np.zeros(b.shape, np.uint8),
                                      "attnseg_source_uid": image_b.unique_id})
    assert carry_reviewed(viewer, run) == []
    assert not np.asarray(run.data).any() and not run.metadata.get("reviewed_slices") and reopened.visible
    viewer.layers.remove("A")  # B the only image on that grid: its reopened mask is carried, as the day-2 trial had it
    assert carry_reviewed(viewer, run) == [3] and not reopened.visible


def test_the_sizes_line_of_an_instance_mask_gives_the_count_and_total(make_napari_viewer):
    """nuclei2d's labels (125 nuclei, one value each) opened as a mask: the line listed 125 'class N ... pixels'
    (2,679 characters, a wrapped block 482 pixels high in the Correct panel)."""
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.data import read_image

    lab = np.asarray(read_image(DATA / "nuclei2d" / "labels.tif").data)
    viewer = make_napari_viewer()
    viewer.add_image((lab > 0).astype(np.uint8) * 100, name="cells")
    mask = viewer.add_labels(lab.copy(), name="cells labels")
    corr = CorrectWidget(viewer)
    corr.labels_combo.value = mask.name
    corr._update_info()
    k, n = len(np.unique(lab)) - 1, int(np.count_nonzero(lab))
    assert corr.sizes_label.value == f"Mask: {k} labels (one per object?) together {n:,} pixels", corr.sizes_label.value


def test_a_resumed_run_that_had_stopped_early_goes_straight_to_its_refit(tmp_path):
    """The run stopped early at epoch 3 (patience 2) and was killed during its refit; --resume trained a 4th
    validated epoch ('stopped early at epoch 4') and gave the refit 6 epochs, not the 7 left of the plan."""
    from napari_attnseg.training.trainer import Trainer

    lab = np.zeros((12, 32, 32), np.int64)
    lab[3:9, 10:18, 10:18] = 1
    img = (lab * 200.0 + 100 + np.random.default_rng(0).normal(0, 20, lab.shape)).astype(np.float32)
    export_case(img, lab, tmp_path / "ds", "nnunet", reviewed_slices=[1, 4, 6, 8, 10], label_names=["background", "blob"])
    torch.manual_seed(0)
    save_model(create_model("unet", spatial_dims=2, features=[8, 16, 32]), tmp_path / "s.safetensors",
               ModelCard(arch="", config={}, name="s", classes=["background", "blob"], tile=[32, 32]))
    cfg = dict(dataset=str(tmp_path / "ds"), out=str(tmp_path / "a"), start_model=str(tmp_path / "s.safetensors"),
               epochs=10, iters_per_epoch=2, batch_size=2, patch=[32, 32], patience=2)
    first = Trainer(TrainConfig(**cfg))
    scripted = iter([[0.1], [0.6], [0.3], [0.3]])  # the start, epochs 1-3
    first.evaluate = lambda parts: next(scripted)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # (the machine went down during the refit)

    first._refit = killed
    try:
        first.fit()
    except KeyboardInterrupt:
        pass
    again = Trainer(TrainConfig(**cfg, resume=True))
    again.evaluate = lambda parts: [0.6]
    res = again.fit()
    with open(res.log) as f:
        log = list(csv.DictReader(f))
    assert [r["val_dice_per_class"] for r in log[3:]] == ["refit"] * 7, log
    assert any("the refit takes the 7 epochs early stopping left" in n for n in res.notes), res.notes
    assert not any("stopped early at epoch 4" in n for n in res.notes), res.notes


def test_the_far_negatives_note_promises_the_refit_only_when_there_is_one(tmp_path):
    """One reviewed foreground slice to train on, --refit 0: the note said far negatives 'start at the refit if the
    validation slices add some', for a run with no refit."""
    from napari_attnseg.training.trainer import Trainer

    shape = (16, 32, 32)
    lab = np.zeros(shape, np.int64)
    yy, xx = np.indices(shape[1:])
    lab[3:9][:, (yy - 16) ** 2 + (xx - 12) ** 2 <= 25] = 1
    img = (lab * 100.0 + 300 + np.random.default_rng(0).normal(0, 20, shape)).astype(np.float32)
    export_case(img, lab, tmp_path / "ds", "nnunet", reviewed_slices=[1, 4, 7], label_names=["background", "disc"])
    save_model(create_model("unet", spatial_dims=2, features=[8, 16, 32]), tmp_path / "s.safetensors",
               ModelCard(arch="", config={}, name="s", classes=["background", "disc"], tile=[32, 32]))

    def far_notes(refit: float) -> list[str]:
        t = Trainer(TrainConfig(dataset=str(tmp_path / "ds"), out=str(tmp_path / "o"), start_model=str(tmp_path / "s.safetensors"),
                                epochs=6, iters_per_epoch=1, batch_size=2, patch=[32, 32], val_slices=[1, 7], refit=refit,
                                far_negatives=0.3))
        return [n for n in t.notes if n.startswith("far negatives off")]

    (off,) = far_notes(0.0)
    assert "1 reviewed slice(s) with foreground" in off and "refit" not in off, off
    (off,) = far_notes(0.34)
    assert off.endswith("they start at the refit if the validation slices add some"), off


def test_the_sizes_line_of_a_time_series_of_volumes_is_per_frame_in_cubic_microns(make_napari_viewer):
    """A (t, z, y, x) mask, 60 s x 2 x 0.5 x 0.5 µm: 'class 1 3.07e+05 µm² (10,248 pixels)', the time step multiplied
    in, a volume in square microns."""
    from napari_attnseg._napari.correct_widget import CorrectWidget
    from napari_attnseg.data import read_image
    from napari_attnseg.measure import class_sizes

    lab = (np.asarray(read_image(DATA / "nuclei2d" / "labels.tif").data)[:64, :64] > 0).astype(np.uint8)
    series = np.stack([np.stack([lab] * 4)] * 3)  # 3 time points of a 4-plane stack
    viewer = make_napari_viewer()
    placement = {"scale": (60, 2, 0.5, 0.5), "units": ("s", "um", "um", "um")}
    viewer.add_image(series * 100.0, name="cells", **placement)
    mask = viewer.add_labels(series.copy(), name="cells mask", **placement)
    corr = CorrectWidget(viewer)
    corr.labels_combo.value = mask.name
    corr._update_info()
    n = int(series.sum())
    assert corr.sizes_label.value == f"Mask: class 1 {n * 0.5 / 3:.3g} µm³ per frame ({n:,} voxels over 3 frames)", \
        corr.sizes_label.value
    assert class_sizes({1: 10}, (1.0, 1.0, 5.0, 0.7, 0.7), "mm") == "class 1 10 voxels"  # (no unit for 5 axes)
