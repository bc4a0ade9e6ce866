"""Big inputs, checked on small arrays: what writing a prediction costs in memory, what a full disk or a
file-size limit says, what an interrupted write leaves, and that a long run says what it is doing."""

from __future__ import annotations

import errno
import json
import resource
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_attnseg import create_model, save_model
from napari_attnseg.cli import main
from napari_attnseg.data import read_image, write_image
from napari_attnseg.errors import InputError
from napari_attnseg.inference.outputs import foreground_float32, room_for
from napari_attnseg.inference.prediction import AttentionMap, Prediction
from napari_attnseg.results import record_path, write_prediction


def _nifti(path: Path, shape=(24, 40, 32)) -> Path:
    data = np.random.default_rng(0).integers(-1000, 1000, shape[::-1]).astype(np.int16)  # (i, j, k)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 1.5, 1.0])), str(path))
    return path


def _pred(shape, k_out=3, maps=True) -> Prediction:
    rng = np.random.default_rng(1)
    p = rng.random((k_out, *shape)).astype(np.float32)
    p /= p.sum(0, keepdims=True)
    attention = [AttentionMap("level2", 0, rng.random(tuple(-(-s // 2) for s in shape)).astype(np.float16),
                              (2.0,) * len(shape), (0.5,) * len(shape))] if maps else []
    return Prediction(labels=p.argmax(0).astype(np.uint8), probabilities=p.astype(np.float16), attention=attention,
                      classes=["background", "a", "b"][:k_out], device="cpu", precision="fp32")


def test_foreground_probabilities_are_one_float32_copy_in_the_writers_layout():
    probs = np.random.default_rng(0).random((3, 20, 30, 40)).astype(np.float16)
    tracemalloc.start()
    try:
        fg = foreground_float32(probs, reversed_layout=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fg.dtype == np.float32 and fg.shape == (2, 20, 30, 40)
    np.testing.assert_array_equal(fg, probs[1:].astype(np.float32))
    assert fg.transpose(3, 2, 1, 0).flags.c_contiguous  # what the NIfTI writer makes contiguous: already is
    assert peak < 1.2 * fg.nbytes  # no float32 temporary of all the classes besides it
    one = foreground_float32(probs[:2], reversed_layout=True)
    assert one.shape == (20, 30, 40) and one.T.flags.c_contiguous
    assert foreground_float32(probs).flags.c_contiguous  # TIFF: written as it is


@pytest.mark.parametrize("k_out, most", [(2, 1.6), (3, 2.6)])
def test_writing_a_nifti_prediction_makes_no_second_float32_copy(tmp_path, k_out, most):
    src = _nifti(tmp_path / "ct.nii.gz", shape=(48, 96, 128))
    vol = read_image(src)
    pred = _pred(vol.data.shape, k_out=k_out, maps=False)
    fg_bytes = 4 * (k_out - 1) * vol.data.size  # the foreground probabilities as float32
    write_prediction(tmp_path / "warm", src, vol, None, _pred((4, 5, 6), maps=False))  # imports done first
    tracemalloc.start()
    try:
        write_prediction(tmp_path / "out", src, vol, None, pred)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # was 2.2 x (one class) and 3.2 x (two): the float32 copy, then the NIfTI writer's contiguous transpose
    # of it; nibabel itself copies a 4D array once more
    assert peak < most * fg_bytes, f"peak {peak / fg_bytes:.2f} x the float32 probabilities"
    back = np.asarray(nib.load(str(tmp_path / "out" / "ct_prob.nii.gz")).dataobj)
    fg = pred.probabilities[1:].astype(np.float32)
    np.testing.assert_array_equal(back, (fg[0] if k_out == 2 else fg).T)
    assert back.dtype == np.float32
    assert read_image(tmp_path / "out" / "ct_mask.nii.gz").data.dtype == np.uint8


def _fail_at(monkeypatch, name_part: str, exc: BaseException):
    """The real writer, except that the file whose name holds ``name_part`` fails."""
    import napari_attnseg.results as results

    def writer(path, data, **kw):
        if name_part in Path(path).name:
            raise exc
        return write_image(path, data, **kw)

    monkeypatch.setattr(results, "write_image", writer)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EFBIG])
def test_a_full_disk_names_the_file_and_what_to_do_and_leaves_nothing_that_looks_finished(tmp_path, monkeypatch, err):
    src = _nifti(tmp_path / "ct.nii.gz")
    vol = read_image(src)
    pred = _pred(vol.data.shape)
    _fail_at(monkeypatch, "_prob", OSError(err, "No space left on device" if err == errno.ENOSPC else "File too large"))
    out = tmp_path / "out"
    with pytest.raises(InputError) as info:
        write_prediction(out, src, vol, None, pred)
    msg = str(info.value)
    assert str(out / "ct_prob.nii.gz") in msg and "--no-prob" in msg and "another --out" in msg
    assert "MB" in msg and "run it again" in msg
    assert sorted(p.name for p in out.iterdir()) == []  # no mask without its record, no marker, no link


def test_ctrl_c_while_writing_leaves_no_finished_looking_case(tmp_path, monkeypatch):
    from napari_attnseg.results import case_state, partial_marker

    src = _nifti(tmp_path / "ct.nii.gz")
    vol = read_image(src)
    out = tmp_path / "out"
    _fail_at(monkeypatch, "_attention_", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        write_prediction(out, src, vol, None, _pred(vol.data.shape))
    assert not record_path(out, src).exists() and partial_marker(out, src).exists()  # as after a kill
    assert case_state(out, src, None, None) == "stale"  # a cohort redoes it; nothing reads as finished
    assert not any(".tmp" in p.name for p in out.iterdir())


def test_room_for_leaves_other_errors_alone(tmp_path):
    with pytest.raises(PermissionError), room_for(tmp_path / "x", tmp_path, tmp_path / "a.tif", _pred((4, 4))):
        raise PermissionError(errno.EACCES, "denied")


@pytest.fixture
def model2d(tmp_path):
    torch.manual_seed(0)
    model = create_model("attention_unet", spatial_dims=2, features=(4, 8, 16, 32)).eval()
    path = tmp_path / "tiny2d.safetensors"
    save_model(model, path, card={"name": "tiny2d", "arch": model.arch, "config": model.config,
                                  "classes": ["background", "thing"], "normalization": {"scheme": "zscore"},
                                  "tile": [32, 32], "overlap": 0.25})
    return path


def test_the_cli_says_what_it_writes_and_when_the_tiles_are_done(tmp_path, model2d, capsys):
    src = _nifti(tmp_path / "ct.nii.gz", shape=(3, 40, 48))
    code = main(["predict", str(src), "--model", str(model2d), "--out", str(tmp_path / "out"), "--attention",
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0
    assert "tiles done; finishing the outputs" in err
    # outputs this small are written in no time: no line about each (test_dicom_seg_write: a big one is named)
    assert "writing ct_" not in err and "before compression" not in err


def test_the_cli_under_a_file_size_limit_names_the_file(tmp_path, model2d):
    """``ulimit -f``: the real limit, in a child process (Python ignores SIGXFSZ, so the write fails with EFBIG)."""
    src = tmp_path / "big.tif"
    import tifffile

    tifffile.imwrite(src, np.random.default_rng(0).normal(1000, 200, (256, 256)).astype(np.uint16))
    out = tmp_path / "out"
    limit = 40_000  # the mask (64 kB, compressed smaller) fits; the float32 probability (256 kB) does not

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    run = subprocess.run([sys.executable, "-m", "napari_attnseg", "predict", str(src), "--model", str(model2d),
                          "--out", str(out), "--device", "cpu"], capture_output=True, text=True, preexec_fn=cap,
                         timeout=300)
    assert run.returncode == 1, run.stderr
    assert f"{out / 'big_prob.tif'} could not be written" in run.stderr, run.stderr
    assert "--no-prob" in run.stderr and "unexpected" not in run.stderr
    # nothing that looks finished, nothing to --overwrite next time (the --out the run made, empty, is removed)
    assert not out.exists() or [p.name for p in out.iterdir()] == []


def test_out_of_memory_says_what_to_try(tmp_path, model2d, capsys, monkeypatch):
    import napari_attnseg.inference as inference

    def no_room(*a, **k):
        raise MemoryError("Unable to allocate 1.26 GiB for an array with shape (2, 600, 512, 512) and data type float32")

    monkeypatch.setattr(inference, "predict", no_room)
    src = _nifti(tmp_path / "ct.nii.gz", shape=(3, 40, 48))
    code = main(["predict", str(src), "--model", str(model2d), "--out", str(tmp_path / "out"), "--attention"])
    err = capsys.readouterr().err
    assert code == 1
    assert "ct.nii.gz: error: ran out of memory (Unable to allocate 1.26 GiB" in err
    assert "--no-prob" in err and "without --attention" in err and "unexpected" not in err


def test_a_record_of_a_finished_write_names_every_file(tmp_path):
    src = _nifti(tmp_path / "ct.nii.gz")
    vol = read_image(src)
    write_prediction(tmp_path / "out", src, vol, None, _pred(vol.data.shape))
    record = json.loads((tmp_path / "out" / "ct_predict.json").read_text())
    assert all((tmp_path / "out" / n).is_file() for n in record["outputs"])
    assert not (tmp_path / "out" / ".ct_predict.partial").exists()


def test_probabilities_are_zoomed_back_a_few_rows_at_a_time():
    """The resampled path (a CT at another spacing than the model's) zoomed every class back to the image grid
    as one float32 array and took its int64 argmax: 12x the input at the peak on a 512 x 512 x 600 CT. Zooming
    row blocks into the outputs gives the same values (to float32 rounding) with a small fraction of that."""
    import tracemalloc

    from napari_attnseg.inference.resample import zoom_back_into, zoom_probabilities

    rng = np.random.default_rng(0)
    on_grid = rng.random((3, 100, 32, 32)).astype(np.float32)
    shape = (400, 64, 64)
    reference = zoom_probabilities(on_grid, shape)
    labels, probs = np.empty(shape, np.uint8), np.empty((3, *shape), np.float16)
    tracemalloc.start()
    zoom_back_into(on_grid, shape, labels, probs)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(labels, reference.argmax(0))
    np.testing.assert_allclose(probs, reference, atol=1e-3)
    assert peak < reference.nbytes / 4, f"{peak / 1e6:.1f} MB for a {reference.nbytes / 1e6:.1f} MB float32 copy"


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_writing_a_nifti_makes_no_whole_copy(tmp_path, ext):
    """write_nifti copied every output into (i, j, k) order first (np.ascontiguousarray of the transpose): 2.2x
    the array for .nii, 1.07x for .nii.gz; nibabel writes the transposed view as it is."""
    import tracemalloc

    from napari_attnseg.data import read_image
    from napari_attnseg.data.nifti import write_nifti

    data = np.random.default_rng(0).random((32, 256, 256)).astype(np.float32)
    write_nifti(tmp_path / f"warm{ext}", data[:2], (1.0, 1.0, 1.0), None, None)  # (imports, first-call caches)
    tracemalloc.start()
    write_nifti(tmp_path / f"a{ext}", data, (1.0, 1.0, 1.0), None, None)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.5 * data.nbytes, f"{peak / data.nbytes:.2f}x the array"
    assert np.array_equal(read_image(tmp_path / f"a{ext}").data, data)


def test_the_image_is_normalised_and_resampled_a_few_rows_at_a_time():
    """zoom_image normalised the whole image to float32 and zoomed it (float64 inside ndimage): 7x the input at
    the peak on a CT; now row blocks, the same values to float32 rounding, the output plus a small block."""
    import tracemalloc

    from scipy import ndimage

    from napari_attnseg.inference.normalize import apply_stats
    from napari_attnseg.inference.resample import zoom_image

    image = np.random.default_rng(0).normal(40, 300, (960, 64, 64)).astype(np.int16)
    stats = {"offset": np.array([-1000.0], np.float32), "scale": np.array([1400.0], np.float32), "clip": True,
             "fill": -1000.0}
    factors = (0.5, 2.0, 2.0)  # thick slices made thinner, in-plane made coarser
    old = ndimage.zoom(apply_stats(image[None], stats)[0], [1 / f for f in factors], order=1, grid_mode=True,
                       mode="nearest")
    tracemalloc.start()
    new = zoom_image(image, stats, factors, False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert new.shape == (1, *old.shape) and np.abs(new[0] - old).max() < 1e-6
    assert peak < new.nbytes + image.nbytes, f"{peak / image.nbytes:.1f}x the input"


def test_class_argmax_and_plane_zoom_are_numpys_and_ndimages():
    """The zoom back to the image grid interpolates each block's planes with torch (1.6 -> 0.6 s for a 1 mm
    head) and takes the labels by plane comparisons (0.37 s of NumPy's strided argmax -> ~0.05 s): the
    labels must be argmax's, the first class winning a tie, and the values ndimage.zoom's."""
    from scipy import ndimage

    from napari_attnseg.inference.resample import _zoom_planes, argmax_classes

    rng = np.random.default_rng(2)
    for k in (1, 2, 3, 6):
        scores = rng.integers(0, 3, (k, 9, 11)).astype(np.float32)  # many ties
        np.testing.assert_array_equal(argmax_classes(scores), scores.argmax(0))
    for plane_in, plane_out in (((7, 12), (19, 5)), ((30,), (11,)), ((4, 5), (4, 5)), ((3, 9, 8), (6, 4, 17))):
        rows = rng.random((2, 3, *plane_in)).astype(np.float32)
        got = _zoom_planes(rows, plane_out)
        zoom = [1.0, 1.0, *(o / i for o, i in zip(plane_out, plane_in))]
        want = ndimage.zoom(rows.astype(np.float64), zoom, order=1, grid_mode=True, mode="nearest")
        np.testing.assert_allclose(got, want[(slice(None), slice(None), *(slice(0, o) for o in plane_out))], atol=1e-5)
