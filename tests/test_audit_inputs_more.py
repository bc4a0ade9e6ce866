"""Inputs users bring that were mishandled: a time-lapse exported for nnU-Net / MONAI as one 3D case (its frames
z-slices of a fake volume), RGBA pictures (an opaque alpha made them 4-channel: a model reading colours refused them),
a TIFF with a trailing (Y, X, 1) axis (taken for 64 one-row slices), and a palette (P mode) PNG mask (read as its
colours). Real nuclei crops, tiny models."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from napari_attnseg import create_model, predict, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.cli import main
from napari_attnseg.data import read_image
from napari_attnseg.data.dataset import read_dataset
from napari_attnseg.errors import InputError

DATA = Path("/work/shared/data/nuclei2d")
if not (DATA / "image.tif").exists():  # (the package's own sample is the same image)
    DATA = Path(__file__).resolve().parents[1] / "resources" / "samples"


def _nuclei(n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    name = "image.tif" if (DATA / "image.tif").exists() else "nuclei2d_image.tif"
    image = tifffile.imread(DATA / name)[:n, :n]
    grey = (image / max(1, image.max()) * 255).astype(np.uint8)
    return grey, (grey > np.percentile(grey, 75)).astype(np.uint8)


def _model(tmp_path: Path, channels: int) -> Path:
    torch.manual_seed(0)
    model = create_model("attention_unet", spatial_dims=2, in_channels=channels, features=(4, 8, 16, 32, 64))
    path = tmp_path / f"rgb{channels}.safetensors"
    save_model(model, path, ModelCard(arch="", config={}, name=f"c{channels}", description="test", tile=[32, 32]))
    return path


def _colours(grey: np.ndarray) -> np.ndarray:
    return np.stack([grey, 255 - grey, grey // 2], -1)  # three colours carrying different images


# 1. a time-lapse exported for nnU-Net / MONAI: one 2D case per frame ---------------------------------------------


def _time_lapse(tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    grey, _ = _nuclei()
    movie = np.stack([np.roll(grey, 3 * t, axis=1) for t in range(3)])
    masks = (movie > np.percentile(movie, 75)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "movie.tif", movie, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "TYX", "unit": "micron", "spacing": 2.0, "finterval": 30})
    tifffile.imwrite(tmp_path / "movie_mask.tif", masks, imagej=True, metadata={"axes": "TYX"})
    return movie, masks


@pytest.mark.parametrize("fmt", ["nnunet", "monai"])
def test_a_time_lapse_is_exported_as_one_2d_case_per_frame(tmp_path, capsys, fmt):
    movie, masks = _time_lapse(tmp_path)
    ds = tmp_path / "ds"
    assert main(["export", "--image", str(tmp_path / "movie.tif"), "--labels", str(tmp_path / "movie_mask.tif"),
                 "--dataset", str(ds), "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert "exported 3 of the 3 frames of the time-lapse" in out and "case_0000_t000 .. case_0000_t002" in out, out
    images = "imagesTr" if fmt == "nnunet" else "images"
    files = sorted(p.name for p in (ds / images).iterdir() if not p.name.startswith("."))
    assert files == ([f"case_0000_t00{t}_0000.nii.gz" for t in range(3)] if fmt == "nnunet" else
                     [f"case_0000_t00{t}.nii.gz" for t in range(3)]), files
    first = nib.load(next((ds / images).glob("case_0000_t001*")))
    assert first.ndim == 2 and first.header.get_zooms() == pytest.approx((0.5, 0.5))  # a 2D image, no fake z axis
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["spatial_dims"] == 2 and len(manifest["cases"]) == 3
    dataset = read_dataset(ds)
    for t, case in enumerate(dataset.cases):
        image, labels, spacing = case.load()
        assert image.shape == (1, 48, 48) and np.array_equal(image[0], movie[t]) and np.array_equal(labels, masks[t])
        assert spacing == pytest.approx((0.5, 0.5))


def test_a_time_lapse_frame_nobody_reviewed_is_left_out(tmp_path, capsys):
    _, masks = _time_lapse(tmp_path)
    ds = tmp_path / "ds"
    args = ["export", "--image", str(tmp_path / "movie.tif"), "--labels", str(tmp_path / "movie_mask.tif"),
            "--dataset", str(ds)]
    assert main([*args, "--reviewed-slices", "0,2"]) == 0
    out = capsys.readouterr().out
    assert "exported 2 of the 3 frames" in out and "case_0000_t000 .. case_0000_t002" in out, out
    assert "the 1 frame(s) not marked reviewed are left out" in out
    assert json.loads((ds / "dataset.json").read_text())["labels"] == {"background": 0, "foreground": 1}
    dataset = read_dataset(ds)
    assert [c.case_id for c in dataset.cases] == ["case_0000_t000", "case_0000_t002"] and dataset.ignore_label is None
    assert all(np.array_equal(c.load_labels(), masks[t]) for c, t in zip(dataset.cases, (0, 2)))
    assert main([*args, "--reviewed-slices", "5-7"]) == 1  # (no frame reviewed: nothing to export, said so)
    assert "None of the 3 frames of the time-lapse" in capsys.readouterr().err


def test_a_time_lapse_keeps_its_frames_in_the_tiff_layout(tmp_path, capsys):
    _time_lapse(tmp_path)
    ds = tmp_path / "ds"
    assert main(["export", "--image", str(tmp_path / "movie.tif"), "--labels", str(tmp_path / "movie_mask.tif"),
                 "--dataset", str(ds), "--format", "tiff"]) == 0
    with tifffile.TiffFile(ds / "images" / "case_0000.tif") as tif:
        assert tif.series[0].axes == "TYX" and tif.series[0].shape == (3, 48, 48)


# 2. RGBA pictures ------------------------------------------------------------------------------------------------


def _rgba(tmp_path: Path, name: str, transparent: bool) -> Path:
    grey, _ = _nuclei()
    alpha = np.full_like(grey, 255)
    if transparent:
        alpha[:8] = 0
    rgba = np.dstack([_colours(grey), alpha])
    path = tmp_path / name
    if name.endswith(".png"):
        Image.fromarray(rgba, "RGBA").save(path)
    else:
        tifffile.imwrite(path, rgba, photometric="rgb", extrasamples=["unassalpha"])
    return path


@pytest.mark.parametrize("name", ["slide.png", "slide.tif"])
def test_an_opaque_rgba_picture_is_read_as_rgb_with_a_note(tmp_path, name):
    vol = read_image(_rgba(tmp_path, name, transparent=False))
    assert vol.data.shape == (48, 48, 3) and vol.meta["axes"] == "YXS"
    assert f"alpha channel of {name} is fully opaque" in vol.meta["note"]
    kept = read_image(_rgba(tmp_path, "t_" + name, transparent=True))  # real transparency: kept for the grey image
    assert kept.data.shape == (48, 48, 4) and "note" not in kept.meta


@pytest.mark.parametrize("name", ["slide.png", "slide.tif"])
def test_predict_gives_an_opaque_rgba_picture_to_a_model_reading_rgb(tmp_path, capsys, name):
    path = _rgba(tmp_path, name, transparent=False)
    assert main(["predict", str(path), "--model", str(_model(tmp_path, 3)), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "is fully opaque" in err and "alpha dropped" in err, err
    assert tifffile.imread(tmp_path / "out" / f"{Path(name).stem}_mask.tif").shape == (48, 48)


def test_core_predict_says_what_to_do_with_an_rgba_array(tmp_path):
    model = str(_model(tmp_path, 3))
    grey, _ = _nuclei(32)
    rgba = np.dstack([_colours(grey), np.full_like(grey, 255)])
    with pytest.raises(InputError, match=r"alpha is one value throughout \(opaque\).*image\[:3\]"):
        predict(model, np.moveaxis(rgba, -1, 0))
    with pytest.raises(InputError, match=r"image\[\.\.\., :3\].*np\.moveaxis"):
        predict(model, rgba)
    rgba[:4, :, 3] = 0
    with pytest.raises(InputError, match=r"transparent pixels \(12% .*rgba2rgb"):
        predict(model, np.moveaxis(rgba, -1, 0))
    with pytest.raises(InputError, match=r"colours are on the last axis.*np\.moveaxis\(image, -1, 0\)"):
        predict(model, rgba[..., :3])
    assert predict(model, np.moveaxis(rgba[..., :3], -1, 0)).labels.shape == (32, 32)


def test_a_dataset_of_opaque_rgba_and_rgb_pictures_loads_with_three_channels(tmp_path):
    grey, mask = _nuclei()
    (tmp_path / "ds" / "images").mkdir(parents=True)
    (tmp_path / "ds" / "labels").mkdir()
    for k in range(2):  # one RGB, one opaque RGBA (a screenshot tool's): a model reading colours trains on both
        rgb = _colours(np.roll(grey, 5 * k, axis=0))
        data = rgb if k == 0 else np.dstack([rgb, np.full_like(grey, 255)])
        tifffile.imwrite(tmp_path / "ds" / "images" / f"c{k}.tif", data, photometric="rgb",
                         **({"extrasamples": ["unassalpha"]} if k else {}))
        tifffile.imwrite(tmp_path / "ds" / "labels" / f"c{k}.tif", np.roll(mask, 5 * k, axis=0))
    cases = read_dataset(tmp_path / "ds").cases
    assert [c.load()[0].shape for c in cases] == [(3, 48, 48), (3, 48, 48)]


# 3. other inputs of the same family ---------------------------------------------------------------------------


def test_a_tiff_with_a_trailing_singleton_axis_is_a_2d_image(tmp_path, capsys):
    grey, mask = _nuclei()
    tifffile.imwrite(tmp_path / "plane.tif", grey[..., None])
    tifffile.imwrite(tmp_path / "plane_labels.tif", mask[..., None])
    vol = read_image(tmp_path / "plane.tif")
    assert vol.data.shape == (48, 48) and vol.meta["axes"] == "YX" and len(vol.spacing) == 2
    assert main(["predict", str(tmp_path / "plane.tif"), "--model", str(_model(tmp_path, 1)),
                 "--out", str(tmp_path / "out")]) == 0
    assert tifffile.imread(tmp_path / "out" / "plane_mask.tif").shape == (48, 48)
    assert main(["export", "--image", str(tmp_path / "plane.tif"), "--labels", str(tmp_path / "plane_labels.tif"),
                 "--dataset", str(tmp_path / "ds")]) == 0


def _palette_mask(path: Path, mask: np.ndarray) -> None:
    im = Image.fromarray(mask, "P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)  # value 1 red, 2 green (as PASCAL VOC masks)
    im.save(path)


def test_a_palette_png_mask_exports_its_class_ids(tmp_path, capsys):
    grey, mask = _nuclei()
    mask = mask.copy()
    mask[:4, :4] = 2
    tifffile.imwrite(tmp_path / "image.tif", grey)
    _palette_mask(tmp_path / "mask.png", mask)
    assert main(["export", "--image", str(tmp_path / "image.tif"), "--labels", str(tmp_path / "mask.png"),
                 "--dataset", str(tmp_path / "ds"), "--label-names", "background,nucleus,debris"]) == 0
    assert np.array_equal(read_dataset(tmp_path / "ds").cases[0].load_labels(), mask)


def test_a_foreign_png_dataset_with_palette_masks_loads_their_class_ids(tmp_path):
    grey, mask = _nuclei()
    ds = tmp_path / "Dataset042_Nuclei"
    (ds / "imagesTr").mkdir(parents=True)
    (ds / "labelsTr").mkdir()
    Image.fromarray(grey).save(ds / "imagesTr" / "c1_0000.png")
    _palette_mask(ds / "labelsTr" / "c1.png", mask)
    (ds / "dataset.json").write_text(json.dumps({"channel_names": {"0": "image"}, "labels": {"background": 0,
                                                 "nucleus": 1}, "numTraining": 1, "file_ending": ".png"}))
    image, labels, _ = read_dataset(ds).cases[0].load()
    assert image.shape == (1, 48, 48) and np.array_equal(labels, mask)


def test_a_grey_mask_saved_as_rgb_exports_its_grey_values(tmp_path, capsys):
    grey, mask = _nuclei()
    tifffile.imwrite(tmp_path / "image.tif", grey)
    Image.fromarray(np.dstack([mask] * 3)).save(tmp_path / "mask.png")  # (a paint program's RGB save)
    assert main(["export", "--image", str(tmp_path / "image.tif"), "--labels", str(tmp_path / "mask.png"),
                 "--dataset", str(tmp_path / "ds")]) == 0
    assert "a grey mask saved as colour" in capsys.readouterr().err
    assert np.array_equal(read_dataset(tmp_path / "ds").cases[0].load_labels(), mask)


def _png16(path: Path, rgb: np.ndarray) -> None:
    """A 16-bit RGB PNG (as a scanner or ImageMagick writes it; Pillow cannot write one)."""
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", rgb.shape[1], rgb.shape[0], 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def test_a_16_bit_colour_png_warns_that_it_is_read_at_8_bits(tmp_path, capsys):
    grey, _ = _nuclei()
    _png16(tmp_path / "scan.png", _colours(grey).astype(np.uint16) * 257 + 3)
    vol = read_image(tmp_path / "scan.png")
    assert vol.data.dtype == np.uint8 and "16-bit PNG" in vol.meta["warning"]  # (Pillow keeps 8 bits)
    assert main(["predict", str(tmp_path / "scan.png"), "--model", str(_model(tmp_path, 3)),
                 "--out", str(tmp_path / "out")]) == 0
    assert "scan.png is a 16-bit PNG with colour or alpha, read at 8 bits" in capsys.readouterr().err


def test_the_cli_refuses_a_time_lapse_export_that_would_split_the_movie(tmp_path, capsys):
    """napari refused these, attnseg export did not (exit 0): --overwrite with fewer reviewed frames left the earlier
    frames' cases beside the new ones, and a frame's own id as --case-id made case_0000_t000_t003, which the
    train/validation split takes for another movie. One frame is named once."""
    _time_lapse(tmp_path)
    ds = tmp_path / "ds"
    args = ["export", "--image", str(tmp_path / "movie.tif"), "--labels", str(tmp_path / "movie_mask.tif"),
            "--dataset", str(ds)]
    assert main([*args, "--reviewed-slices", "0,2"]) == 0
    capsys.readouterr()
    assert main([*args, "--reviewed-slices", "1", "--case-id", "case_0000", "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "would not replace frames 0,2 (case_0000_t000, case_0000_t002)" in err, err
    assert main([*args, "--reviewed-slices", "1", "--case-id", "case_0000_t000"]) == 1
    err = capsys.readouterr().err
    assert "case_0000_t000 is a frame of the time-lapse case_0000" in err and "--case-id case_0000 --overwrite" in err
    assert sorted(c["case_id"] for c in json.loads((ds / "manifest.json").read_text())["cases"]) == \
        ["case_0000_t000", "case_0000_t002"]  # (nothing changed)
    assert main([*args, "--reviewed-slices", "0-2", "--case-id", "case_0000", "--overwrite"]) == 0  # all frames: fine
    capsys.readouterr()
    assert main([*args, "--reviewed-slices", "1"]) == 0
    out = capsys.readouterr().out
    assert "as the 2D case case_0003_t001 to" in out and " .. " not in out, out  # (the next free id after 3 cases)
