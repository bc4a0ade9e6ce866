"""Every user-facing failure of the ``attnseg`` CLI is one line on stderr and exit status 1, never a
traceback (the cases of issue 22, and a failure nobody anticipated)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_attnseg import create_model, save_model
from napari_attnseg.cli import main
from napari_attnseg.data.export import export_case

REPO = Path(__file__).resolve().parents[1]
TINY = {"features": [4, 8, 16]}


def one_error_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"attnseg {command}: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    mask = np.zeros((48, 48), np.uint8)
    mask[10:30, 12:34] = 1
    image = (mask * 100 + rng.normal(300, 30, mask.shape)).astype(np.float32)
    export_case(image, mask, tmp_path / "ds", "tiff", case_id="img", label_names=["background", "blob"])
    return tmp_path / "ds"


@pytest.fixture
def model2d(tmp_path):
    torch.manual_seed(0)
    model = create_model("unet", spatial_dims=2, features=[4, 8]).eval()
    path = tmp_path / "m.safetensors"
    save_model(model, path, card={"name": "m", "tile": [32, 32]})
    return path


@pytest.mark.parametrize("extra, says", [
    (["--dims", "3", "--config", '{"spatial_dims": 2}'], "--dims 3 and --config spatial_dims 2 disagree"),
    (["--config", '{"spatial_dims": 4}'], "spatial_dims must be 2 or 3"),
    (["--config", '{"in_channels": 3}'], "cannot set in_channels"),
    (["--config", "[16, 32]"], "takes a JSON object"),
    (["--config", "{features: [4]}"], "not valid JSON"),
])
def test_train_option_conflicts_are_one_line(tmp_path, dataset, capsys, extra, says):
    rc = main(["train", str(dataset), "--arch", "attention_unet", "--out", str(tmp_path / "o"), *extra])
    line = one_error_line(capsys.readouterr().err, "train")
    assert rc == 1 and says in line
    assert not (tmp_path / "o" / "best.safetensors").exists()


def test_train_takes_spatial_dims_from_the_config(tmp_path, dataset, capsys, monkeypatch):
    """The issue's command: ``--config '{"spatial_dims": 2}'`` without ``--dims`` used to end in
    "got multiple values for keyword argument 'spatial_dims'"; now it trains a 2D model."""
    from napari_attnseg import load_model

    monkeypatch.setenv("ATTNSEG_MODELS_DIR", str(tmp_path / "my-models"))
    rc = main(["train", str(dataset), "--arch", "unet", "--config", json.dumps({"spatial_dims": 2, **TINY}),
               "--out", str(tmp_path / "o"), "--epochs", "1", "--iters-per-epoch", "1", "--batch", "1",
               "--patch", "32,32", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert load_model(tmp_path / "o" / "best.safetensors").spatial_dims == 2
    # the summary says how to use it by name, and that command works
    line = next(x for x in out.splitlines() if "attnseg models --add" in x)
    assert line.endswith(f"attnseg models --add {tmp_path / 'o'} --name o")
    assert main(["models", "--add", str(tmp_path / "o"), "--name", "o"]) == 0
    assert load_model("o").spatial_dims == 2
    from napari_attnseg.models.registry import model_name_of  # a folder name that is no model name: made one

    assert model_name_of("run 2 (tumour v2)") == "run-2-tumour-v2" and model_name_of("_x") == "x"
    assert model_name_of("modèle") == "modele" and model_name_of("***") == "model"
    # a model from scratch that finds (almost) nothing points the user at fine-tuning the bundled 2D model
    from types import SimpleNamespace

    from napari_attnseg.cli._train_common import scratch_hint

    cfg = SimpleNamespace(start_model=None, dataset=str(dataset))
    result = SimpleNamespace(cancelled=False, criterion="val_dice", val_dice_after=0.0007,
                             checkpoint=str(tmp_path / "o" / "best.safetensors"))
    assert f"attnseg finetune {dataset} --model nuclei-2d --out DIR" in scratch_hint(cfg, result)
    assert scratch_hint(cfg, SimpleNamespace(**{**vars(result), "val_dice_after": 0.6})) is None
    assert scratch_hint(SimpleNamespace(start_model="nuclei-2d", dataset=str(dataset)), result) is None
    # a 2-channel model: no bundled model takes 2 channels (fine-tuning nuclei-2d would be refused), no hint
    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard

    two = tmp_path / "two.safetensors"
    save_model(create_model("unet", spatial_dims=2, in_channels=2, **TINY), two, ModelCard(arch="", config={}))
    assert scratch_hint(cfg, SimpleNamespace(**{**vars(result), "checkpoint": str(two)})) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_predict_on_a_device_this_machine_lacks_is_one_line(tmp_path, model2d):
    """Run as a user does (a separate process, no CUDA visible)."""
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((32, 32), np.uint8))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    env.pop("ATTNSEG_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "napari_attnseg.cli", "predict", str(tmp_path / "a.tif"),
                           "--model", str(model2d), "--out", str(tmp_path / "out"), "--device", "cuda"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    line = one_error_line(proc.stderr, "predict")
    assert proc.returncode == 1 and "'cuda' is not available on this machine" in line and "cpu" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("region, says", [
    ("a:b", "--region 'a:b'"),
    ("0:5,0:5,0:5", "has 3 axes; the data has 2"),
])
def test_evaluate_with_a_bad_region_is_one_line_before_predicting(tmp_path, model2d, capsys, monkeypatch, region, says):
    import napari_attnseg.inference as inference

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((32, 32), np.uint8))
    tifffile.imwrite(tmp_path / "l.tif", np.zeros((32, 32), np.uint8))
    monkeypatch.setattr(inference, "predict", lambda *a, **k: pytest.fail("predicted before checking --region"))
    rc = main(["evaluate", "--model", str(model2d), "--image", str(tmp_path / "a.tif"), "--labels",
               str(tmp_path / "l.tif"), "--region", region, "--device", "cpu"])
    line = one_error_line(capsys.readouterr().err, "evaluate")
    assert rc == 1 and says in line


def test_an_unexpected_failure_is_one_line_and_the_traceback_is_on_request(tmp_path, model2d, capsys, monkeypatch):
    import napari_attnseg.checkpoint as checkpoint

    def broken(*args, **kwargs):
        raise RuntimeError("something\nunexpected")

    monkeypatch.setattr(checkpoint, "load_model", broken)
    argv = ["predict", str(tmp_path / "a.tif"), "--model", str(model2d), "--out", str(tmp_path / "o")]
    monkeypatch.delenv("ATTNSEG_DEBUG", raising=False)
    assert main(argv) == 1
    line = one_error_line(capsys.readouterr().err, "predict")
    assert "RuntimeError: something unexpected" in line and "ATTNSEG_DEBUG=1" in line
    monkeypatch.setenv("ATTNSEG_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(argv)


def test_train_and_finetune_refuse_an_out_that_holds_a_model(tmp_path, capsys):
    """A second run into the same --out is refused (nothing the user made is replaced silently);
    --overwrite replaces it, and a file as --out is refused."""
    from napari_attnseg.cli import main
    from napari_attnseg.data.export import export_case

    rng = np.random.default_rng(0)
    lab = np.zeros((8, 32, 32), np.int64)
    lab[:, 8:20, 8:20] = 1
    export_case((lab * 100 + rng.normal(0, 5, lab.shape)).astype(np.float32), lab, tmp_path / "ds", "nnunet")
    out = tmp_path / "m"
    out.mkdir()
    (out / "best.safetensors").write_bytes(b"my model")
    tiny = ["--epochs", "1", "--iters-per-epoch", "1", "--batch", "2", "--patch", "16,16"]
    assert main(["train", str(tmp_path / "ds"), "--arch", "unet", "--dims", "2", "--out", str(out), *tiny]) == 1
    err = capsys.readouterr().err
    assert "already holds a model (best.safetensors)" in err and "--overwrite" in err
    assert main(["finetune", str(tmp_path / "ds"), "--model", "nuclei-2d", "--out", str(out), *tiny]) == 1
    assert (out / "best.safetensors").read_bytes() == b"my model"
    (tmp_path / "file").write_text("x")
    assert main(["train", str(tmp_path / "ds"), "--arch", "unet", "--out", str(tmp_path / "file"), *tiny]) == 1
    assert "is a file" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "ds"), "--arch", "unet", "--dims", "2", "--out", str(out), "--overwrite",
                 "--config", '{"features": [4, 8, 16]}', *tiny]) == 0
    assert (out / "best.safetensors").read_bytes() != b"my model"
    assert (out / "replaced-1" / "best.safetensors").read_bytes() == b"my model"  # moved aside, never destroyed
    assert "moved to" in capsys.readouterr().err
    # --out given as a model file name: it names a folder, said before anything is made
    assert main(["train", str(tmp_path / "ds"), "--arch", "unet", "--dims", "2", "--out",
                 str(tmp_path / "model.safetensors"), *tiny]) == 1
    assert "names a folder" in capsys.readouterr().err and not (tmp_path / "model.safetensors").exists()
    # a model name with a typo: the bundled name it is closest to
    assert main(["finetune", str(tmp_path / "ds"), "--model", "nuclei2d", "--out", str(tmp_path / "m2"), *tiny]) == 1
    assert "Did you mean 'nuclei-2d'?" in capsys.readouterr().err


def test_the_summary_warns_when_the_model_finds_nothing_on_validation(capsys):
    """A run that ends with validation Dice 0 (e.g. a 3D model re-headed for new classes, one short epoch)
    says so as a warning, not only in a note; a run that found something does not."""
    from napari_attnseg.cli._train_common import print_summary
    from napari_attnseg.training.config import TrainResult

    print_summary(TrainResult("", 0.0, 0.0, None, 1, 60.0, "held-out slices", kept_start=True))
    out = capsys.readouterr()
    assert "checkpoint: (none written)" in out.out and "finds nothing on the validation set" in out.err
    print_summary(TrainResult("m/best.safetensors", 0.2, 0.61, None, 5, 60.0, "held-out slices"))
    assert "warning" not in capsys.readouterr().err


def test_demo_with_an_unknown_model_is_an_error_not_another_model(capsys):
    """`attnseg demo --model nosuch` ran the click model nuclei-2d-prompt instead (Dice 0): a typo is an error."""
    assert main(["demo", "--model", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert "No bundled model named 'nosuch'" in err and "nuclei-2d" in err


def test_the_demo_without_opengl_says_what_it_needs():
    """`attnseg demo` where Qt has no OpenGL (QT_QPA_PLATFORM=offscreen) ended in "AttributeError: 'NoneType'
    object has no attribute 'decode'"; it says it needs a display with OpenGL, and how to get one."""
    import subprocess
    import sys

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("DISPLAY", None)
    run = subprocess.run([sys.executable, "-m", "napari_attnseg", "demo", "--quit"], env=env, capture_output=True,
                         text=True, timeout=300)
    if run.returncode == 0:
        pytest.skip("Qt's offscreen platform has OpenGL on this machine")
    assert run.returncode == 1 and "needs a display with OpenGL" in run.stderr and "xvfb-run" in run.stderr, run.stderr
