"""Models a user brings: hand-edited or damaged checkpoints, another tool's weights, and the user models folder
(``attnseg models``, ``--model NAME``, the Segment tab's card lookups)."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from napari_attnseg import create_model, load_model, save_model
from napari_attnseg.checkpoint import ModelCard, read_card, resolve_model_path, tensors_sha256
from napari_attnseg.cli import main
from napari_attnseg.errors import CheckpointError


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    """An empty user models folder, so the tests never read or write the real one."""
    where = tmp_path / "my-models"
    monkeypatch.setenv("ATTNSEG_MODELS_DIR", str(where))
    return where


def _save(path, arch="attention_unet", dims=2, name="tiny", **config):
    torch.manual_seed(0)
    config = config or ({"features": [4, 8, 16, 32]} if arch in ("unet", "attention_unet") else {})
    model = create_model(arch, spatial_dims=dims, **config)
    save_model(model, path, ModelCard(arch="", config={}, name=name, description=f"{name} test model",
                                      tile=[32] * dims))
    return path


def _rewrite(path, edit_card=None, edit_tensors=None, keep_sha=False):
    """The checkpoint at ``path`` rewritten as a user's own script would: its card or tensors edited (the card's
    digest made to match the new tensors unless ``keep_sha``), the sibling card removed."""
    tensors = load_file(str(path))
    card = json.loads(path.with_suffix(".json").read_text())
    if edit_tensors:
        edit_tensors(tensors)
        if not keep_sha:
            card["weights_sha256"] = tensors_sha256(tensors)
    if edit_card:
        edit_card(card)
    save_file(tensors, str(path), metadata={"card": json.dumps(card)})
    path.with_suffix(".json").unlink()
    return path


@pytest.mark.parametrize("key,value", [
    ("classes", "background, nucleus"), ("config", "features 16"), ("spacing", "1,1"), ("tile", 64),
    ("overlap", "0.25"), ("normalization", "percentile"), ("name", 5), ("object_diameter", -3),
    ("orientation", "SAR"), ("format_version", 99)])
def test_a_card_field_of_the_wrong_type_is_refused_naming_file_and_field(tmp_path, key, value):
    """A hand-edited card used to load (classes "background, nucleus" became 19 one-letter classes; a spacing
    or normalisation string failed later as 'unexpected ValueError' without the file's name)."""
    path = _rewrite(_save(tmp_path / "m.safetensors"), edit_card=lambda c: c.__setitem__(key, value))
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    text = str(err.value)
    assert "m.safetensors" in text and (f"'{key}'" in text or key == "format_version")
    assert "update napari-attnseg" in text if key == "format_version" else "original file" in text


def test_a_card_whose_classes_or_channels_disagree_with_the_weights_says_so(tmp_path):
    path = _rewrite(_save(tmp_path / "a.safetensors"), edit_card=lambda c: c.__setitem__("classes", ["bg", "a", "b"]))
    with pytest.raises(CheckpointError, match=r"a.safetensors names 3 classes \(bg, a, b\) but the model has 2 outputs"):
        load_model(path)
    path = _rewrite(_save(tmp_path / "b.safetensors"), edit_card=lambda c: c["config"].__setitem__("in_channels", 2))
    with pytest.raises(CheckpointError, match="b.safetensors.*take 1 input channel.*says in_channels 2"):
        load_model(path)
    path = _rewrite(_save(tmp_path / "c.safetensors"),
                    edit_card=lambda c: (c["config"].__setitem__("out_channels", 3), c.__setitem__("classes", list("xyz"))))
    with pytest.raises(CheckpointError, match="c.safetensors.*have 2 outputs.*says out_channels 3"):
        load_model(path)


def test_weights_that_do_not_fit_name_the_tensors(tmp_path):
    """A missing, an extra and a misshaped tensor were all 'Error(s) in loading state_dict for AttentionUNet:'."""
    def drop(t):
        del t["head.bias"]

    def misshape(t):
        t["head.weight"] = torch.zeros(2, 5, 1, 1)

    for name, edit, expected in (("missing", drop, "1 tensor(s) missing: head.bias"),
                                 ("extra", lambda t: t.__setitem__("extra.weight", torch.zeros(3)),
                                  "1 tensor(s) unexpected: extra.weight"),
                                 ("shape", misshape, "of another shape: head.weight (2, 5, 1, 1) (card: (2, 4, 1, 1))")):
        path = _rewrite(_save(tmp_path / f"{name}.safetensors"), edit_tensors=edit)
        with pytest.raises(CheckpointError, match=f"{name}.safetensors do not fit.*{re.escape(expected)}.*original file"):
            load_model(path)


def test_weights_without_a_card_say_whether_a_card_can_be_added(tmp_path):
    ours = tmp_path / "ours.safetensors"
    save_file({k: v.contiguous() for k, v in create_model("transfuse").state_dict().items()}, str(ours))
    with pytest.raises(CheckpointError, match="ours.safetensors has no .*model card.*napari-attnseg 'transfuse'.*"
                                              r"create_model\('transfuse'"):
        read_card(ours)
    try:  # a MONAI AttentionUnet's state_dict saved with safetensors (MONAI is a test extra)
        from monai.networks.nets import AttentionUnet

        net = AttentionUnet(spatial_dims=2, in_channels=1, out_channels=2, channels=(8, 16, 32), strides=(2, 2))
        foreign = {k: v.contiguous() for k, v in net.state_dict().items()}
    except ImportError:
        foreign = {"model.0.conv.0.conv.weight": torch.zeros(8, 1, 3, 3), "model.1.submodule.bias": torch.zeros(8)}
    theirs = tmp_path / "monai.safetensors"
    save_file(foreign, str(theirs))
    with pytest.raises(CheckpointError, match="monai.safetensors .*not those of any napari-attnseg architecture.*"
                                              "attnseg finetune"):
        load_model(theirs)
    # the same weights under a napari-attnseg card (copied from one of the user's models)
    card = json.loads(_save(tmp_path / "card.safetensors").with_suffix(".json").read_text())
    card["weights_sha256"] = ""
    save_file(foreign, str(theirs), metadata={"card": json.dumps(card)})
    with pytest.raises(CheckpointError, match=f"none of its {len(foreign)} tensors has a name of this architecture"):
        load_model(theirs)


def test_the_user_models_folder_lists_and_loads_models_by_name(folder, tmp_path):
    from napari_attnseg.models.registry import available_models, list_models, user_models

    folder.mkdir()
    _save(folder / "cells.safetensors", name="same-name")
    run = folder / "cells-finetuned"  # a folder train/finetune wrote, dropped in whole
    run.mkdir()
    _save(run / "best.safetensors", dims=3, name="same-name")
    (folder / "broken.safetensors").write_bytes(b"not a model")
    _save(folder / "nuclei-2d.safetensors", name="mine")  # a bundled model's name
    found, problems = user_models()
    assert found == {"cells": folder / "cells.safetensors", "cells-finetuned": run / "best.safetensors"}
    assert any("not listed: " in p and "broken.safetensors" in p and "truncated or corrupt" in p for p in problems)
    if "nuclei-2d" in available_models():
        assert any("'nuclei-2d' is a bundled model's name" in p for p in problems)
        assert resolve_model_path("nuclei-2d").parent != folder  # the bundled one stays the bundled one
    # two models with the same card name are told apart by their file and folder names
    assert load_model("cells").spatial_dims == 2 and load_model("cells-finetuned").spatial_dims == 3
    listing = list_models()
    assert listing["user_folder"] == str(folder)
    assert [(m["name"], m["dims"]) for m in listing["user"]] == [("cells", "2D"), ("cells-finetuned", "3D")]
    with pytest.raises(CheckpointError, match=f"No bundled model named 'cels'.*{folder}.*Did you mean 'cells'"):
        resolve_model_path("cels")


def test_attnseg_models_add_copies_without_replacing_and_lists(folder, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    _save(run / "best.safetensors", name="nuclei-2d-finetuned")
    assert main(["models", "--add", str(run)]) == 0
    assert (folder / "nuclei-2d-finetuned.safetensors").is_file() and (folder / "nuclei-2d-finetuned.json").is_file()
    before = (folder / "nuclei-2d-finetuned.safetensors").read_bytes()
    second = tmp_path / "second"
    second.mkdir()
    _save(second / "best.safetensors", dims=3, name="nuclei-2d-finetuned")  # the same card name again
    assert main(["models", "--add", str(second)]) == 1
    assert "already has 'nuclei-2d-finetuned'" in capsys.readouterr().err
    assert (folder / "nuclei-2d-finetuned.safetensors").read_bytes() == before  # nothing replaced
    assert main(["models", "--add", str(second / "best.safetensors"), "--name", "round2"]) == 0
    assert load_model("round2").card.name == "round2" and load_model("round2").spatial_dims == 3  # card renamed too
    assert read_card(folder / "round2.safetensors").weights_sha256 == read_card(second / "best.safetensors").weights_sha256
    broken = tmp_path / "broken.safetensors"
    shutil.copy(second / "best.safetensors", broken)
    broken.write_bytes(broken.read_bytes()[:500])
    assert main(["models", "--add", str(broken), "--name", "b"]) == 1 and not (folder / "b.safetensors").exists()
    capsys.readouterr()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"Your models (--model NAME), in {folder}:" in out
    assert "nuclei-2d-finetuned" in out and "round2" in out and "3D" in out
    assert main(["models", "--show", "round2"]) == 0
    assert "input channels 1" in capsys.readouterr().out


def test_the_panels_card_lookups_know_the_user_models(folder):
    """The Segment tab's list holds names; a user model's name must give its card (dims, kind) like a bundled one."""
    from types import SimpleNamespace

    import numpy as np

    from napari_attnseg._napari.model_choice import (
        card_dict,
        card_summary,
        model_dims,
        model_for_layer,
        user_model_entries,
    )

    folder.mkdir()
    _save(folder / "vol.safetensors", dims=3, name="vol")
    _save(folder / "flat.safetensors", dims=2, name="flat")
    assert user_model_entries([]) == {"flat": "flat", "vol": "vol"}
    assert user_model_entries([str(folder / "vol.safetensors")]) == {"flat": "flat"}  # loaded by path already
    assert model_dims("vol") == 3 and card_dict("flat")["name"] == "flat"
    assert "attention_unet 3D, 1 input channel(s), classes: background, foreground" in card_summary(card_dict("vol"))
    image = SimpleNamespace(ndim=2, rgb=False, unique_id=1, metadata={}, data=np.zeros((8, 8), np.float32))
    assert model_for_layer({"vol": "vol", "flat": "flat"}, "vol", image) == "flat"  # a 3D model cannot take it


def test_a_two_channel_model_on_one_channel_names_the_model_and_the_way_out(tmp_path):
    import numpy as np

    from napari_attnseg import predict
    from napari_attnseg.errors import InputError

    _save(tmp_path / "two.safetensors", name="two-stains", in_channels=2, features=[4, 8, 16, 32])
    with pytest.raises(InputError, match="Model 'two-stains' takes 2 channels.*choose a model that takes one channel"):
        predict(load_model(tmp_path / "two.safetensors"), np.zeros((64, 64), np.float32))


def test_a_damaged_model_called_by_name_says_what_is_wrong_and_a_file_as_folder_is_named(folder, tmp_path, capsys,
                                                                                        monkeypatch):
    """A damaged file of the folder is listed with its problem, but --model NAME said "no model of that name"; a
    models folder that is a file looked empty, and --add failed with a FileExistsError."""
    folder.mkdir()
    good = _save(tmp_path / "good.safetensors")
    (folder / "broken.safetensors").write_bytes(good.read_bytes()[:200])  # truncated
    with pytest.raises(CheckpointError) as err:
        load_model("broken")
    assert "broken.safetensors" in str(err.value) and "no model of that name" not in str(err.value)
    afile = tmp_path / "afile"
    afile.write_text("")
    monkeypatch.setenv("ATTNSEG_MODELS_DIR", str(afile))
    assert main(["models"]) == 0
    assert f"{afile} is not a folder you can read" in capsys.readouterr().err
    assert main(["models", "--add", str(good)]) == 1
    assert f"Your models folder {afile} is a file" in capsys.readouterr().err
