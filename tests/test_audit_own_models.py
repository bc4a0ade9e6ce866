"""Audit "bring your own model": a model trained on another machine handed over to a colleague, who adds it
(``attnseg models --add``, napari's Load checkpoint...) and runs it; and the files handed over that are not such a
model (a TorchScript, a MONAI bundle, a zip, a run's training state), refused with what is accepted."""

from __future__ import annotations

import errno
import json
import shutil
import zipfile

import pytest
import torch
from safetensors.torch import load_file, save_file

from napari_attnseg import create_model, load_model, save_model
from napari_attnseg.cli import main
from napari_attnseg.errors import CheckpointError
from napari_attnseg.models.registry import user_models, user_models_dir


def _save(path, arch="attention_unet", name="tiny", description="a test model", **config):
    """A small model saved as a checkpoint with its card (what train/finetune/save_model write)."""
    torch.manual_seed(0)
    config = config or ({"features": [4, 8, 16, 32]} if arch in ("unet", "attention_unet") else {})
    save_model(create_model(arch, **config), path, card={"name": name, "description": description, "tile": [32, 32]})
    return path


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "attnseg models: error: " in err and "Traceback" not in err and "OSError" not in err, err
    return err


def test_adding_to_a_read_only_models_folder_says_what_to_do_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    """A models folder on a read-only share: --add failed with "OSError: [Errno 30] Read-only file system:
    '.../.run1.safetensors.wtz8i_c9.tmp.safetensors'", a temporary file's name and no way out."""
    model = _save(tmp_path / "run1" / "best.safetensors", name="cells")
    user_models_dir().mkdir(parents=True)

    def read_only(source, target, **_):  # what writing into a read-only mount raises
        raise OSError(errno.EROFS, "Read-only file system", str(target))

    monkeypatch.setattr(shutil, "copyfile", read_only)
    assert main(["models", "--add", str(model.parent)]) == 1
    err = _error(capsys)
    assert f"Cannot write 'cells' into your models folder {user_models_dir()} (Read-only file system)" in err
    assert "nothing was added" in err and "ATTNSEG_MODELS_DIR" in err and ".tmp" not in err
    assert list(user_models_dir().iterdir()) == []


def test_a_run_named_after_its_architecture_is_added_under_its_folder_or_file_name(tmp_path, capsys):
    """`attnseg train` without --name names the card after the architecture, and prints `attnseg models --add run1
    --name run1`; without --name every such run was added as 'attention_unet' (an architecture's name, and the
    second colleague's run collided with it) instead of its folder's or file's name."""
    run = tmp_path / "anna-nuclei"
    _save(run / "best.safetensors", name="attention_unet")
    assert main(["models", "--add", str(run)]) == 0
    renamed = tmp_path / "bob_nuclei_v2.safetensors"  # a colleague's best.safetensors, renamed, without its card
    shutil.copy(run / "best.safetensors", renamed)
    assert main(["models", "--add", str(renamed)]) == 0
    assert sorted(user_models()[0]) == ["anna-nuclei", "bob_nuclei_v2"]
    assert load_model("bob_nuclei_v2").card.name == "bob_nuclei_v2"
    named = _save(tmp_path / "x" / "best.safetensors", name="cells-finetuned")  # a real name stays the default
    assert main(["models", "--add", str(named.parent)]) == 0 and "cells-finetuned" in user_models()[0]
    capsys.readouterr()
    _save(user_models_dir() / "plain.safetensors", description="")
    assert main(["models"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("plain "))
    assert line.rstrip().endswith("classes background, foreground"), line  # no dangling "; "


def test_the_training_state_is_not_called_another_tools_network(tmp_path, capsys):
    """A run folder holds state.safetensors (to --resume) beside best.safetensors; given or copied into the models
    folder, it was called "another tool's network (MONAI, nnU-Net, ...)"."""
    from napari_attnseg.training.state import save_state

    net = create_model("attention_unet", features=[4, 8, 16, 32])
    opt = torch.optim.AdamW(net.parameters())
    net(torch.zeros(1, 1, 32, 32)).sum().backward()
    opt.step()
    save_state(tmp_path, net, opt, {"epoch": 1}, rng={"torch": torch.get_rng_state()})
    with pytest.raises(CheckpointError, match="training state .*--resume.* not a model. The model is best.safetensors"):
        load_model(tmp_path / "state.safetensors")
    user_models_dir().mkdir(parents=True)
    shutil.copy(tmp_path / "state.safetensors", user_models_dir())
    assert not any("another tool" in p for p in user_models()[1])
    assert main(["models", "--add", str(tmp_path / "state.safetensors"), "--name", "s"]) == 1
    assert "best.safetensors beside it" in _error(capsys)


def test_torchscript_monai_bundles_and_zips_are_refused_saying_what_is_accepted(tmp_path, capsys):
    """A TorchScript was called "a PyTorch pickle (torch.save)" with torch.load advice that cannot convert it; a
    MONAI bundle was "a folder without best.safetensors"; a zip "may be truncated or corrupt"."""
    script = torch.jit.trace(torch.nn.Conv2d(1, 2, 3), torch.zeros(1, 1, 8, 8))
    for name in ("model.pt", "model.safetensors"):
        script.save(str(tmp_path / name))
        with pytest.raises(CheckpointError, match=r"TorchScript model \(torch.jit.save\).*runs its own checkpoints only: "
                                                  r"a \.safetensors file with its card.*torch\.jit\.load\(PATH\)"):
            load_model(tmp_path / name)
    bundle = tmp_path / "spleen_ct_segmentation"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"version": "0.5.0"}))
    script.save(str(bundle / "models" / "model.ts"))
    torch.save({"w": torch.zeros(2)}, bundle / "models" / "model.pt")
    for given in (bundle, tmp_path, bundle / "models" / "model.pt", bundle / "models" / "model.ts"):
        with pytest.raises(CheckpointError, match=r"MONAI bundle.*cannot run.*runs its own checkpoints only"):
            load_model(given)
    assert main(["models", "--add", str(bundle)]) == 1
    assert "is a MONAI bundle" in _error(capsys)
    packed = tmp_path / "anna-model.zip"
    _save(tmp_path / "run" / "best.safetensors")
    with zipfile.ZipFile(packed, "w") as z:
        z.write(tmp_path / "run" / "best.safetensors", "anna-model/run/best.safetensors")
    with pytest.raises(CheckpointError, match="is a zip archive, not a model: unpack it.*anna-model/run/best.safetensors"):
        load_model(packed)


def test_a_zip_unpacked_with_its_wrapper_folder_names_the_model_inside(tmp_path, capsys):
    """A zip of a run folder unpacks into a wrapper folder (anna-model/run1/best.safetensors), or holds renamed
    files; --add of the wrapper said only "a folder without best.safetensors", and the same folders dropped into
    the models folder were silently not listed."""
    wrapper = tmp_path / "anna-model"
    _save(wrapper / "run1" / "best.safetensors", name="cells")
    assert main(["models", "--add", str(wrapper)]) == 1
    assert f"It holds {wrapper / 'run1'}: pass that instead." in _error(capsys)
    assert main(["models", "--add", str(wrapper / "run1")]) == 0
    folder = user_models_dir()
    shutil.copytree(wrapper, folder / "wrapped")
    _save(folder / "renamed" / "nuclei_anna.safetensors")
    problems = user_models()[1]
    assert any(str(folder / "wrapped") in p and "run1/best.safetensors" in p and "not listed" in p for p in problems)
    assert any(str(folder / "renamed") in p and "nuclei_anna.safetensors" in p for p in problems)
    assert main(["models"]) == 0
    assert "attnseg models --add " + str(folder / "renamed" / "nuclei_anna.safetensors") in capsys.readouterr().err


def test_a_card_naming_another_architecture_says_whose_tensors_they_are(tmp_path):
    """A card whose 'arch' was edited (or copied from another model) said "unexpected keyword argument
    'deep_supervision'" or listed tensor names, never that the weights are another architecture's."""
    source = _save(tmp_path / "au.safetensors")
    tensors = load_file(str(source))
    card = json.loads(source.with_suffix(".json").read_text())
    for arch, also in (("unet", "unexpected keyword"), ("attention-unet", "Did you mean 'attention_unet'")):
        save_file(tensors, str(tmp_path / f"{arch}.safetensors"), metadata={"card": json.dumps({**card, "arch": arch})})
        with pytest.raises(CheckpointError, match=f"tensors are those of a napari-attnseg 'attention_unet', not {arch!r}"
                                                  ) as err:
            load_model(tmp_path / f"{arch}.safetensors")
        assert also in str(err.value)
    plain = _save(tmp_path / "plain.safetensors", arch="unet")  # a config both architectures take: strict load fails
    card = json.loads(plain.with_suffix(".json").read_text())
    save_file(load_file(str(plain)), str(plain), metadata={"card": json.dumps({**card, "arch": "attention_unet"})})
    plain.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="its tensors are those of a napari-attnseg 'unet', not 'attention_unet'"):
        load_model(plain)


@pytest.fixture()
def two_user_models():
    """Two models in the user models folder, there before a panel opens."""
    folder = user_models_dir()
    _save(folder / "cells.safetensors", name="cells")
    _save(folder / "cells2.safetensors", name="cells2")
    return folder


def test_a_model_removed_while_napari_is_open_is_called_gone(two_user_models, segment_panel):
    """The Segment tab lists the models folder when it opens; a model deleted since, then chosen and run, said "No
    bundled model named 'cells' ... Did you mean 'cells2'?" as if it had never existed."""
    folder = two_user_models
    viewer, w = segment_panel
    assert {"cells", "cells2"} <= set(w.model_names())
    viewer.add_image(torch.rand(64, 64).numpy(), name="img")
    (folder / "cells.safetensors").unlink()
    (folder / "cells.json").unlink()
    w.model_combo.value = "cells"
    w.run()
    said = " ".join(map(str, w.messages))
    assert "'cells' is gone from your models folder" in said and "deleted, moved or renamed" in said, said
    assert "Did you mean" not in said
    with pytest.raises(CheckpointError, match="is gone from your models folder"):  # the CLI in the same session too
        load_model("cells")


@pytest.mark.gui
def test_a_two_channel_model_runs_on_its_two_channel_layer_in_the_segment_tab(segment_panel, qtbot):
    """A colleague's 2-channel 2D model (two stains) on the (2, y, x) layer napari makes of a 2-channel TIFF: the
    Segment tab refused it ("the models take one channel ... Split Stack", the CLI's own hint says to make such a
    layer) and preset Mode: slices; now the layer is one 2D image of the model's two channels."""
    import numpy as np

    folder = user_models_dir()
    torch.manual_seed(0)
    save_model(create_model("attention_unet", spatial_dims=2, in_channels=2, out_channels=2, features=[4, 8, 16, 32]),
               folder / "two-stain.safetensors", card={"name": "two-stain", "tile": [32, 32]})
    viewer, w = segment_panel
    w.refresh_models()  # the folder is read when the panel opens; the model was added since
    stains = np.random.default_rng(0).random((2, 48, 48)).astype(np.float32)
    viewer.add_image(stains, name="stains", axis_labels=("c", "y", "x"))
    w.image_combo.value = "stains"
    w.model_combo.value = "two-stain"
    assert w.mode_combo.value == "2d"
    with qtbot.waitSignal(w.run_done, timeout=120000) as done:
        w.run()
    assert done.args == [True], w.messages
    assert viewer.layers["stains mask"].data.shape[-2:] == (48, 48)
    # a one-channel model on the same layer (axis label c) is still told to split the stack
    w.model_combo.value = "nuclei-2d"
    w.run()
    assert any("Split Stack" in str(m) for m in w.messages), w.messages


def test_show_says_when_the_training_paths_are_another_machines(tmp_path, capsys):
    """`attnseg models --show nuclei-2d` printed "trained on /work/data/train/ds_nuclei", a folder of the machine
    that trained the bundled model, as if the user should find it; a colleague's model likewise."""
    assert main(["models", "--show", "nuclei-2d"]) == 0
    out = capsys.readouterr().out
    assert "trained on" in out and "machine that trained it" in out and "train_default_models.sh" in out
    path = tmp_path / "theirs.safetensors"
    torch.manual_seed(0)
    save_model(create_model("attention_unet", features=[4, 8, 16, 32]), path,
               card={"name": "theirs", "tile": [32, 32], "training": {"dataset": "/data/lab7/ds_cells"}})
    assert main(["models", "--show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "/data/lab7/ds_cells is not on this machine" in out
    (tmp_path / "ds_here").mkdir()
    save_model(create_model("attention_unet", features=[4, 8, 16, 32]), path,
               card={"name": "theirs", "tile": [32, 32], "training": {"dataset": str(tmp_path / "ds_here")}})
    assert main(["models", "--show", str(path)]) == 0
    assert "not on this machine" not in capsys.readouterr().out
