"""A new user's third pass over the README: `attnseg demo` with no display and with the user's own models,
`attnseg evaluate --tta` and its --region example for a 3D image, and scripts/train_default_models.sh's python."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_attnseg.cli import main

REPO = Path(__file__).resolve().parents[1]
NUCLEI = Path("/work/shared/data/nuclei2d")
NO_DISPLAY = ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")


def _bundled(name: str):
    from napari_attnseg.models.registry import bundled_models

    if name not in bundled_models():
        pytest.skip(f"no bundled model {name} in resources/models")
    from napari_attnseg import load_model

    return load_model(name, device="cpu")


def _demo(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "xcb"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "napari_attnseg", "demo", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


def _copy_of_nuclei_2d(path: Path, name: str) -> Path:
    """The bundled nuclei-2d saved again under another name (a model of the user's that works on the sample)."""
    from napari_attnseg import save_model

    model = _bundled("nuclei-2d")
    save_model(model, path, dataclasses.replace(model.card, name=name))
    return path


# -- 1. attnseg demo with no display ----------------------------------------------------------------------------
@pytest.mark.parametrize("platform", [None, "xcb"])
def test_the_demo_with_no_display_says_what_to_do_instead_of_aborting_in_qt(tmp_path, platform):
    """Was: Qt's "Reinstalling the application may fix this problem", exit 134 (SIGABRT), over ssh to a server."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the X11/Wayland check is Linux's")
    env = {k: v for k, v in os.environ.items() if k not in NO_DISPLAY}
    if platform:
        env["QT_QPA_PLATFORM"] = platform
    run = subprocess.run([sys.executable, "-m", "napari_attnseg", "demo", "--quit"], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 1, (run.returncode, run.stderr[-2000:])
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnseg demo: error: no display to open napari on"), run.stderr
    assert "xvfb-run -a attnseg demo --screenshot demo.png --quit" in lines[0] and "Reinstall" not in run.stderr


def test_a_display_of_either_kind_lets_the_demo_start(monkeypatch):
    from napari_attnseg.cli.demo import no_display

    live = os.environ.get("DISPLAY")
    for name in NO_DISPLAY:
        monkeypatch.delenv(name, raising=False)
    if not sys.platform.startswith("linux"):
        assert no_display() == ""
        return
    assert "neither DISPLAY nor WAYLAND_DISPLAY" in no_display()
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert no_display() == ""
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")  # (xcb needs an X display, Wayland's is not one)
    assert "DISPLAY is not set" in no_display()
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")  # (its own message: no OpenGL, see test_cli_errors)
    assert no_display() == ""
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    if live:  # (a running X server: these tests run under xvfb-run)
        monkeypatch.setenv("DISPLAY", live)
        assert no_display() == ""
    monkeypatch.setenv("DISPLAY", ":4321")  # (no X server there: said, not Qt's abort)
    assert "no X server answers at DISPLAY=:4321" in no_display()


# -- 2. attnseg demo --model: the user's models, train/finetune folders, a wrong name --------------------------------
@pytest.mark.gui
def test_the_demo_runs_a_model_of_the_users_by_name(tmp_path):
    """Was: "no bundled model 'ct-model'" for a model `attnseg models --add ... --name ct-model` had added, which
    predict/evaluate/finetune take by that name."""
    checkpoint = _copy_of_nuclei_2d(tmp_path / "mine.safetensors", "mine")
    assert main(["models", "--add", str(checkpoint), "--name", "ct-model"]) == 0
    run = _demo(["--model", "ct-model", "--screenshot", str(tmp_path / "d.png"), "--quit"], tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert re.search(r"^model: ct-model$", run.stdout, re.M), run.stdout
    assert float(re.search(r"Dice against the reference labels: ([0-9.]+)", run.stdout).group(1)) > 0.8


@pytest.mark.gui
def test_the_demo_runs_the_folder_finetune_wrote_not_the_bundled_model(tmp_path):
    """Was: `attnseg demo --model ./nuclei-clinic` printed "No bundled model './nuclei-clinic'; running 'nuclei-2d'
    instead." and exited 0, having run another model."""
    folder = tmp_path / "nuclei-clinic"
    folder.mkdir()
    _copy_of_nuclei_2d(folder / "best.safetensors", "nuclei-clinic")
    assert (folder / "best.json").is_file()  # (the card beside it, as train/finetune write it)
    run = _demo(["--model", "./nuclei-clinic", "--screenshot", str(tmp_path / "d.png"), "--quit"], tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "instead" not in run.stdout + run.stderr, run.stdout
    assert re.search(r"^model: nuclei-clinic$", run.stdout, re.M), run.stdout


def test_the_demo_refuses_a_wrong_model_name_as_every_command_does(tmp_path, capsys):
    """The same message as predict's (which lists the user's models too), exit 1, and no viewer opened."""
    assert main(["demo", "--model", "ct-modle", "--quit"]) == 1
    demo_err = capsys.readouterr().err
    assert main(["predict", str(tmp_path / "x.tif"), "--model", "ct-modle", "--out", str(tmp_path / "o")]) == 1
    predict_err = capsys.readouterr().err
    said = demo_err.removeprefix("attnseg demo: error: ")
    assert said.startswith("No bundled model named 'ct-modle'") and "your models folder" in said, demo_err
    assert said == predict_err.removeprefix("attnseg predict: error: "), (demo_err, predict_err)
    assert "layers:" not in capsys.readouterr().out


def test_the_demo_help_names_every_kind_of_model():
    from napari_attnseg.cli import build_parser

    text = " ".join(build_parser(["demo"])._subparsers._group_actions[0].choices["demo"].format_help().split())
    assert "one of your models (attnseg models)" in text and "train/finetune folder" in text, text


# -- 3. attnseg evaluate --tta ---------------------------------------------------------------------------------------
def test_evaluate_tta_scores_the_flip_averaged_prediction(tmp_path, capsys):
    """The README's Accuracy column "with flip averaging" had no command: evaluate had no --tta."""
    import napari_attnseg as ag
    from napari_attnseg.training.losses import dice_per_class

    model = _bundled("nuclei-2d")
    img = tifffile.imread(NUCLEI / "image.tif")[:160, 256:416]
    ref = tifffile.imread(NUCLEI / "labels.tif")[:160, 256:416]
    tifffile.imwrite(tmp_path / "img.tif", img)
    tifffile.imwrite(tmp_path / "ref.tif", ref)
    argv = ["evaluate", "--model", "nuclei-2d", "--image", str(tmp_path / "img.tif"), "--labels",
            str(tmp_path / "ref.tif"), "--device", "cpu", "--precision", "fp32", "--json"]
    dice = {}
    for tta in (False, True):
        assert main(argv + (["--tta"] if tta else [])) == 0
        dice[tta] = json.loads(capsys.readouterr().out)["dice"]["nucleus"]
    expected = dice_per_class(ag.predict(model, img, tta=True, device="cpu", precision="fp32").labels,
                              (ref > 0).astype(np.uint8), 2)[0]
    assert dice[True] != dice[False], dice
    assert dice[True] == pytest.approx(expected, abs=1e-6), (dice, expected)


def test_evaluate_tta_has_predicts_meaning_and_help():
    from napari_attnseg.cli import build_parser

    subs = build_parser(["predict", "evaluate"])._subparsers._group_actions[0].choices
    helps = [next(a.help for a in subs[c]._actions if "--tta" in a.option_strings) for c in ("predict", "evaluate")]
    assert helps[0] == helps[1], helps


# -- 4. evaluate --region's example names every axis ------------------------------------------------------------------
def test_the_region_example_of_a_3d_image_names_its_three_axes():
    """Was: "... of shape (94, 116, 98); give ranges within it, e.g. '0:94,0:116'" (axis 2 left out)."""
    from napari_attnseg.cli.evaluate import region_box
    from napari_attnseg.errors import InputError

    with pytest.raises(InputError) as outside:
        region_box("28:44,0:117,0:99", (94, 116, 98), "t1.nii.gz")
    assert "0:117 on axis 1" in str(outside.value) and "e.g. '0:94,0:116,0:98'" in str(outside.value)
    with pytest.raises(InputError) as too_many:
        region_box("0:4,0:4,0:4,0:4", (94, 116, 98), "t1.nii.gz")
    assert "'0:94,0:116,0:98'" in str(too_many.value) and "t1.nii.gz" in str(too_many.value), too_many.value
    assert region_box("28:44,0:116,0:98", (94, 116, 98), "t1.nii.gz") == (slice(28, 44), slice(0, 116), slice(0, 98))


# -- 5. scripts/train_default_models.sh: no bare python ---------------------------------------------------------------
def test_train_default_models_sh_calls_python_through_py():
    """Was: `python scripts/prepare_training_data.py` ("python: command not found" on Debian/Ubuntu)."""
    script = REPO / "scripts" / "train_default_models.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    code = [line.split("#", 1)[0] for line in script.read_text().splitlines()]
    assert any(line.strip().startswith("PY=${PYTHON:-python3}") for line in code)
    bare = [line for line in code if re.search(r"(^|[\s;&|(])python3?\s", line) and "PY=${PYTHON" not in line]
    assert not bare, bare
    assert sum("$PY " in line for line in code) == 2
