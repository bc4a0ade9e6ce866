"""The bundled models: they load, reach the test Dice their cards state on the held-out parts,
and `attnseg demo` shows the nuclei sample with its mask and attention layers."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from napari_attnseg import load_model, predict
from napari_attnseg._paths import samples_dir
from napari_attnseg.data import read_image
from napari_attnseg.evaluation import brain_sample_dice, nuclei_sample_dice
from napari_attnseg.models.registry import bundled_models

BUNDLED = bundled_models()


def needs(name):
    return pytest.mark.skipif(name not in BUNDLED, reason=f"{name} is not in resources/models")


@needs("nuclei-2d")
def test_nuclei_2d_reaches_its_card_on_the_right_half():
    model = load_model("nuclei-2d", device="cpu")
    got = nuclei_sample_dice(model)
    assert got["right_half"] == pytest.approx(model.card.metrics["test_dice"], abs=0.01)
    assert got["whole_image"] == pytest.approx(model.card.metrics["sample_dice"]["whole_image"], abs=0.01)
    assert model.card.training["split"] == ("regions: train nuclei2d[0:512,0:200]; validation nuclei2d[0:512,200:256]; "
                                            "test nuclei2d[0:512,256:512]")
    # the default fast path (bf16 on CPUs that have it) keeps the mask
    image = read_image(samples_dir() / "nuclei2d_image.tif").data
    a = np.asarray(predict(model, image, precision="fp32", return_probabilities=False).labels) > 0
    b = np.asarray(predict(model, image, return_probabilities=False).labels) > 0
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.999


@needs("brain-mri-3d")
def test_brain_mri_3d_reaches_its_card_on_the_test_slab():
    model = load_model("brain-mri-3d", device="cpu")
    assert model.card.classes == ["background", "grey matter", "white matter"]
    assert model.card.spacing == [2.0, 2.0, 2.0]
    got = brain_sample_dice(model)["test_slab_1mm"]
    card = model.card.metrics["sample_dice"]["test_slab_1mm"]
    assert got == pytest.approx(card, abs=0.01)


@needs("nuclei-2d")
@pytest.mark.gui
def test_demo_opens_viewer_with_mask_and_attention(tmp_path):
    shot = tmp_path / "demo.png"
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "xcb")}
    out = subprocess.run([sys.executable, "-m", "napari_attnseg", "demo", "--screenshot", str(shot), "--quit"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    m = re.search(r"Dice against the reference labels: ([0-9.]+)", out.stdout)
    assert m, out.stdout + out.stderr[-2000:]
    card = load_model("nuclei-2d").card
    # the demo scores the whole image with the default precision
    assert float(m.group(1)) == pytest.approx(card.metrics["sample_dice"]["whole_image"], abs=0.01)
    assert shot.exists() and shot.stat().st_size > 10_000


def test_cards_publish_the_robustness_figures():
    """Issue 19: the cards carry the measured rows (rescaled nuclei; the MNI T1 in synthetic skull and scalp)."""
    nuclei = load_model("nuclei-2d").card.metrics["robustness"]
    dice = {(r["image"], r["diameter"].split(":")[0].split(" (")[0]): float(r["right-half Dice"]) for r in nuclei["rows"]}
    native = dice[("native (1x)", "-")]
    assert all(abs(d - native) <= 0.02 for (image, how), d in dice.items() if how != "none"), dice
    brain = {r["change"]: r for r in load_model("brain-mri-3d").card.metrics["robustness"]["rows"]}
    stripped, wrapped = brain["none"], brain["skull and scalp (synthetic), brain extraction auto"]
    for tissue in ("GM", "WM"):
        assert abs(float(wrapped[f"brain-mri-3d {tissue}"]) - float(stripped[f"brain-mri-3d {tissue}"])) <= 0.03


@needs("lesion-3d-prompt")
def test_lesion_3d_prompt_starts_from_the_threshold_guess_and_replays_its_card():
    from pathlib import Path

    from napari_attnseg import segment_with_prompts
    from napari_attnseg.prompts import is_promptable

    model = load_model("lesion-3d-prompt", device="cpu")
    assert is_promptable(model) and model.spatial_dims == 3
    assert model.card.prompt_init == "threshold" and model.card.spacing is None
    assert "lung1" in model.card.training["held_out"]
    # a bright blob: a new object starts from the threshold guess
    g = np.indices((24, 64, 64))
    blob = ((g[0] - 12) ** 2 * 4 + (g[1] - 32) ** 2 + (g[2] - 30) ** 2) <= 100
    img = np.random.default_rng(0).normal(0, 0.1, blob.shape).astype(np.float32) + blob
    res = segment_with_prompts(model, img, [[12, 32, 30]], [1], attention=False)
    assert res.params["prompt_init"] == "threshold" and res.mask[12, 32, 30]
    # the card's first-click Dice on the held-out lung tumour, when the shared data is here
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiomics"
    if not (shared / "lung1_image.nii.gz").exists():
        return
    from napari_attnseg.prompts.simulate import first_click

    im = read_image(shared / "lung1_image.nii.gz")
    target = np.asarray(read_image(shared / "lung1_labels.nii.gz").data) > 0
    idx = np.nonzero(target)
    box = tuple(slice(int(i.min()) - 2, int(i.max()) + 3) for i in idx)
    click = first_click(target[box]) + np.array([s.start for s in box])
    got = segment_with_prompts(model, np.asarray(im.data), click[None], [1], spacing=im.spacing, attention=False).mask
    dice = 2 * (got & target).sum() / (got.sum() + target.sum())
    rows = model.card.metrics["clicks_lung1"]["rows"]
    card = next(r for r in rows if r["variant"].startswith("both") and r["variant"].endswith("deepest first click"))
    assert dice == pytest.approx(card["Dice@1"], abs=0.02)


def test_the_nuclei_models_work_in_pixels_so_a_calibrated_image_is_not_resampled():
    """nuclei-2d learnt uncalibrated pixels: its card has no spacing, so a pixel size in um (a calibrated
    TIFF, a layer scale) changes nothing (with spacing [1, 1] a 0.3 um image was shrunk 3x: Dice 0.82 vs
    0.95); the object diameter is how another magnification is handled. Fine-tuning it on uncalibrated
    pixels keeps it so; a calibrated dataset's spacing is recorded."""
    from types import SimpleNamespace

    from napari_attnseg import load_model, predict
    from napari_attnseg._paths import samples_dir
    from napari_attnseg.data import read_image
    from napari_attnseg.training.card import CardWriter

    image = read_image(samples_dir() / "nuclei2d_image.tif").data[:128, :128]
    for name in ("nuclei-2d", "nuclei-2d-prompt"):
        assert load_model(name).card.spacing is None, name
    model = load_model("nuclei-2d")
    plain = predict(model, image).labels
    assert np.array_equal(predict(model, image, spacing=(0.3, 0.3)).labels, plain)
    writer = SimpleNamespace(spacing=[1.0, 1.0], model=SimpleNamespace(spatial_dims=2))
    assert CardWriter._card_spacing(writer, model.card) is None
    writer.spacing = [0.65, 0.65]
    assert CardWriter._card_spacing(writer, model.card) == [0.65, 0.65]
    writer.spacing = [1.0, 1.0]
    assert CardWriter._card_spacing(writer, load_model("brain-mri-3d").card) == [1.0, 1.0]
    # from scratch: [1, 1] from plain image files (or 2D of unknown source) is "uncalibrated" (recorded, it
    # shrank a calibrated 0.3 um image 3.3x at predict); from NIfTI it is 1 mm, and 3D stays recorded
    writer.dataset = SimpleNamespace(cases=[SimpleNamespace(source_name="image.tif")])
    assert CardWriter._card_spacing(writer, None) is None
    writer.dataset.cases[0].source_name = "slice.nii.gz"
    assert CardWriter._card_spacing(writer, None) == [1.0, 1.0]
    writer.dataset.cases[0].source_name = "layer"
    assert CardWriter._card_spacing(writer, None) is None
    writer.spacing, writer.model.spatial_dims = [1.0, 1.0, 1.0], 3
    assert CardWriter._card_spacing(writer, None) == [1.0, 1.0, 1.0]
    writer.dataset.cases[0].source_name = "stack.tif"
    assert CardWriter._card_spacing(writer, None) is None
