"""Three small defects: exporting a colour case hashed its (3, Y, X) picture through a whole copy (108 MB of a
6000 x 6000 slide); ``attnseg predict --model ./some/dir/best.safetensors`` recorded the checkpoint as typed, so an
export run from another folder did not find the model beside the mask; the Segment tab's refusal of an RGB layer
without a grey image named the layer twice. Real nuclei crop, tiny models, a real viewer."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from test_audit_segment_tab import panel  # noqa: F401  (a fixture: the Segment panel, its messages collected)

from napari_attnseg.checkpoint import ModelCard, save_model
from napari_attnseg.cli import main
from napari_attnseg.data import export
from napari_attnseg.data.export import array_sha256
from napari_attnseg.models.registry import create_model

DATA = Path("/work/shared/data/nuclei2d")


def _grey(n: int) -> np.ndarray:
    image = tifffile.imread(DATA / "image.tif")[:n, :n]
    return (image / max(1, image.max()) * 255).astype(np.uint8)


def _old_sha256(a: np.ndarray) -> str:
    """array_sha256 as it was: the digests existing manifests hold."""
    a = np.asarray(a)
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))
    h = hashlib.sha256(str((a.dtype.str, a.shape)).encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


# 1. a colour case's hash: the same digest, without a copy of the picture ------------------------------------------


def _arrays() -> list[np.ndarray]:
    grey = _grey(96)
    picture = np.stack([grey, 255 - grey, grey // 2], -1)
    out = [np.moveaxis(picture, -1, 0), picture, picture[::2, 1::3], picture.T, grey > 100, (grey > 100)[:, ::-1],
           grey.astype("<u2") * 200, (grey.astype(">u2") * 200), np.asfortranarray(grey.astype(">u2")),
           grey.astype(np.float32) / 7, grey.astype(">f8")[::-1], grey.astype(np.int16)[None, :, ::2] - 100,
           np.stack([grey.astype(">f4")] * 3, 0)[:, :, 5:], grey[0], grey[:, 3], np.float64(2.5) * np.ones(()),
           grey.astype(np.uint16)]
    return out


@pytest.mark.parametrize("block", [64, 1000, 1 << 22])
def test_the_digest_is_the_one_existing_manifests_hold(monkeypatch, block):
    """Every dtype, byte order and memory order: the digest of the whole copy (blocks of 64 bytes: rows split)."""
    monkeypatch.setattr(export, "_HASH_BLOCK", block)
    for a in _arrays():
        assert array_sha256(a) == _old_sha256(a), (a.dtype, a.shape, a.strides)


def test_a_slides_colours_are_hashed_without_a_copy_of_the_picture():
    """A (Y, X, 3) picture exported as colours is hashed as its (3, Y, X) view: the hash's peak was the picture's
    size (a whole copy: 108 MB of a 6000 x 6000 slide); now a block of rows (4 MiB)."""
    picture = np.tile(np.stack([g := _grey(256), 255 - g, g // 2], -1), (12, 12, 1))  # (3072, 3072, 3): 28 MB
    chans = np.moveaxis(picture, -1, 0)  # as export_case hashes a colour case
    tracemalloc.start()
    try:
        digest = array_sha256(chans)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert digest == _old_sha256(chans)
    assert peak < 0.25 * picture.nbytes, (peak, picture.nbytes)


# 2. predict records the checkpoint's absolute path: an export from another folder finds the model --------------------


def _colour_case(root: Path) -> None:
    """root/some/dir/best.safetensors (a model of 3 channels) and root/slide.png (an RGB picture of real nuclei)."""
    torch.manual_seed(0)
    model = create_model("attention_unet", spatial_dims=2, in_channels=3, features=(4, 8, 16, 32, 64))
    (root / "some" / "dir").mkdir(parents=True)
    save_model(model, root / "some" / "dir" / "best.safetensors",
               ModelCard(arch="", config={}, name="c3", description="test", tile=[32, 32]))
    grey = _grey(64)
    Image.fromarray(np.stack([grey, 255 - grey, grey // 2], -1), "RGB").save(root / "slide.png")


def test_an_export_from_another_folder_finds_the_model_typed_relative(tmp_path, monkeypatch):
    """``--model ./some/dir/best.safetensors --out results/run1``, then ``attnseg export`` from another folder: the
    colour model was not found (recorded 'some/dir/best.safetensors'), and the export refused the picture as one for
    a one-channel model. Now the mask and its record name the file's absolute path, and the colours are kept."""
    from napari_attnseg.data import read_image

    _colour_case(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "slide.png", "--model", "./some/dir/best.safetensors", "--out", "results/run1"]) == 0
    best = str(tmp_path / "some" / "dir" / "best.safetensors")
    mask = tmp_path / "results" / "run1" / "slide_mask.tif"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["export", "--image", str(tmp_path / "slide.png"), "--labels", str(mask),
                 "--dataset", str(tmp_path / "ds"), "--format", "tiff"]) == 0
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest.get("colour") and manifest["channel_names"] == ["R", "G", "B"]
    assert json.loads((mask.parent / "slide_predict.json").read_text())["model_path"] == best
    assert read_image(mask).meta["model_info"]["checkpoint"] == best


def test_an_old_relative_record_still_finds_its_model_from_the_folder_predict_ran_in(tmp_path, monkeypatch):
    """A mask written before (its checkpoint relative to predict's folder): found from that folder, as before."""
    from napari_attnseg.checkpoint import read_card
    from napari_attnseg.data.export_colour import model_channels

    _colour_case(tmp_path)
    sha = read_card(tmp_path / "some" / "dir" / "best.safetensors").weights_sha256
    old = {"model": "c3", "weights_sha256": sha, "checkpoint": "some/dir/best.safetensors"}
    monkeypatch.chdir(tmp_path)
    assert model_channels(old, near=tmp_path / "results" / "run1" / "slide_mask.tif") == (3, "c3")


def test_an_old_relative_record_from_another_folder_says_the_model_was_not_found(tmp_path, monkeypatch):
    """The same old record from another folder: its model is not found. The refusal called it a one-channel model;
    it now says the model was not found and that --keep-colour keeps the colours."""
    from napari_attnseg.checkpoint import read_card
    from napari_attnseg.data import read_image
    from napari_attnseg.data.export_colour import picture_for_export
    from napari_attnseg.errors import InputError

    _colour_case(tmp_path)
    sha = read_card(tmp_path / "some" / "dir" / "best.safetensors").weights_sha256
    old = {"model": "c3", "weights_sha256": sha, "checkpoint": "some/dir/best.safetensors"}
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    picture = read_image(tmp_path / "slide.png")
    with pytest.raises(InputError, match=r"slide\.png is an RGB picture .*the model saved with the mask, c3, was not "
                                         r"found to tell whether it reads colours: if it does, pass --keep-colour"):
        picture_for_export(picture, 2, "slide.png", None, old, near=tmp_path / "results" / "run1" / "slide_mask.tif")


def test_a_bundled_name_is_kept_as_a_name():
    from types import SimpleNamespace

    from napari_attnseg.results import checkpoint_of

    assert checkpoint_of(SimpleNamespace(checkpoint_path="nuclei-2d")) == "nuclei-2d"
    assert checkpoint_of(SimpleNamespace()) is None


# 3. the Segment tab's refusal of an RGB layer without a grey image names the layer once ------------------------------


@pytest.mark.gui
def test_the_refusal_of_a_picture_without_a_grey_image_names_the_layer_once(panel, qtbot, tiny_checkpoint):  # noqa: F811
    """Random saturated colours (no grey, no stain) for a one-channel model: refused, 'slide' named once (was
    "slide: Layer 'slide' is RGB ..."), saying Split RGB; nothing added."""
    from napari_attnseg.cohort.inputs import grey_of_colour

    viewer, w = panel
    rng = np.random.default_rng(0)
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255]], np.uint8)
    picture = palette[rng.integers(0, len(palette), (48, 48))]
    assert grey_of_colour(picture) is None
    viewer.add_image(picture, name="slide", rgb=True)
    w.image_combo.value, w.model_combo.value = "slide", w.add_model(tiny_checkpoint(2))
    with qtbot.waitSignal(w.run_done, timeout=60000) as done:
        w.run()
    assert done.args == [False]
    said = [m for m in w.messages if "Split RGB" in m]
    assert len(said) == 1 and said[0].count("slide") == 1, w.messages
    assert "choose a model that reads colours" in said[0] and "right-click" in said[0].lower()
    assert [ly.name for ly in viewer.layers] == ["slide"]


def test_the_export_plan_counts_a_masks_values_without_an_int64_copy_of_it():
    """export_plan counted the classes by np.bincount of the whole mask, which made it int64 first: 288 MB for a
    6000 x 6000 uint8 mask (the peak of a colour slide's export)."""
    import tracemalloc

    from napari_attnseg.data.export_plan import _values_present

    mask = np.zeros((3000, 3000), np.uint8)
    mask[10:50, 10:90], mask[7] = 2, 5
    tracemalloc.start()
    found = _values_present(mask, 6)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert found == {0, 2, 5}
    assert peak < mask.nbytes  # (bincount: 8 x the mask)
    for odd in (mask.astype(bool), mask.astype(np.uint16)[::2, ::3], np.array([[0, -1], [3, 3]], np.int16)):
        assert _values_present(odd, int(odd.max()) + 1) == set(np.unique(odd).astype(int).tolist())
