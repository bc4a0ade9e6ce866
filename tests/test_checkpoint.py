"""Checkpoints round-trip exactly and bad files are refused with a clear message."""

from __future__ import annotations

import json

import pytest
import torch

from napari_attnseg import create_model, load_model, save_model
from napari_attnseg.checkpoint import ModelCard, read_card
from napari_attnseg.errors import CheckpointError

FEATS = (4, 8, 16, 32, 64)


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = create_model("attention_unet", features=FEATS).eval()
    path = tmp_path / "m.safetensors"
    card = ModelCard(arch="", config={}, name="m", classes=["background", "nucleus"], spacing=[0.5, 0.5])
    save_model(model, path, card)
    return model, path


def test_round_trip_reproduces_logits_exactly(saved):
    model, path = saved
    loaded = load_model(path, device="cpu")
    x = torch.randn(2, 1, 40, 52)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.card.classes == ["background", "nucleus"]
    assert loaded.card.spacing == [0.5, 0.5]
    assert len(loaded.card.weights_sha256) == 64
    assert not loaded.training
    assert json.loads(path.with_suffix(".json").read_text())["arch"] == "attention_unet"


def test_float16_storage_halves_the_file_and_keeps_outputs(tmp_path, saved):
    model, path32 = saved
    path16 = tmp_path / "h.safetensors"
    save_model(model, path16, dtype="float16")
    assert path16.stat().st_size < 0.6 * path32.stat().st_size
    loaded = load_model(path16, device="cpu")
    assert loaded.card.weights_dtype == "float16"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())  # computed in fp32
    x = torch.randn(1, 1, 48, 48)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert (a - b).abs().max() <= 2e-2 * a.abs().max()


def test_truncated_file_is_refused(saved):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="m.safetensors"):
        load_model(path)


def test_tampered_weights_are_refused(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # flip bits inside the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(path)


def test_edited_sibling_card_is_refused(saved):
    _, path = saved
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["classes"] = ["background", "tumour"]
    card_path.write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="disagrees"):
        read_card(path)


def test_wrong_architecture_is_refused(tmp_path):
    model = create_model("unet", features=(4, 8, 16))
    path = tmp_path / "u.safetensors"
    save_model(model, path)
    # rewrite the same tensors under a card that claims another architecture
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    card = json.loads(path.with_suffix(".json").read_text())
    card["arch"] = "attention_unet"
    card["config"]["features"] = [4, 8, 16, 32, 64]
    save_file(tensors, str(path), metadata={"card": json.dumps(card)})
    path.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="do not fit architecture"):
        load_model(path)


def test_not_a_checkpoint_and_missing_file(tmp_path):
    bogus = tmp_path / "x.safetensors"
    bogus.write_text("hello, I am not a model")
    with pytest.raises(CheckpointError, match="x.safetensors"):
        load_model(bogus)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="No bundled model"):
        load_model("no-such-model")


def test_no_pickle_anywhere_in_the_package():
    import pathlib

    import napari_attnseg

    root = pathlib.Path(napari_attnseg.__file__).parent
    for py in root.rglob("*.py"):
        text = py.read_text()
        assert "torch.load(" not in text and "import pickle" not in text, py


def test_card_is_in_the_metadata_under_card(saved):
    from safetensors import safe_open

    _, path = saved
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["card"]) == json.loads(path.with_suffix(".json").read_text())


def test_files_with_the_earlier_metadata_key_still_load(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    model, path = saved
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(path)), str(old), metadata={"napari_attnseg_card": path.with_suffix(".json").read_text()})
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), load_model(old, device="cpu")(x))


def test_flipped_header_bytes_are_refused(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[12] ^= 0xFF  # inside the JSON header
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="m.safetensors"):
        load_model(path)


@pytest.mark.parametrize("key,value", [("spacing", [1.0, 1.0]), ("arch", "unet"), ("tile", [64, 64])])
def test_sibling_card_edits_that_change_use_are_refused(saved, key, value):
    _, path = saved
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card[key] = value
    card_path.write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=key):
        load_model(path)
    card_path.write_text("[]")
    with pytest.raises(CheckpointError, match="m.json"):
        load_model(path)
    card_path.unlink()  # the card inside the file is the authority; the sibling is for people
    assert load_model(path).card.name == "m"


def test_every_architecture_round_trips_exactly(tmp_path):
    tiny = {"unet": {"features": [4, 8, 16]}, "attention_unet": {"features": [4, 8, 16, 32]},
            "msga": {"width": 8, "latent": 8}, "transfuse": {"width": 8, "embed_dim": 32, "depth": 1, "heads": 2}}
    for arch, config in tiny.items():
        torch.manual_seed(0)
        model = create_model(arch, **config)
        for p in model.parameters():  # non-trivial values everywhere (gamma etc. start at 0)
            p.data.normal_(0, 0.1)
        model.eval()
        path = tmp_path / f"{arch}.safetensors"
        save_model(model, path)
        loaded = load_model(path, device="cpu")
        x = torch.randn(1, 1, 35, 41)
        with torch.no_grad():
            assert torch.equal(model(x), loaded(x)), arch
            assert all(torch.equal(a, b) for a, b in zip(model(x, True)[1].values(), loaded(x, True)[1].values()))


def test_model_identity_is_the_weights_digest_for_the_cli_and_the_panel(tmp_path):
    """One meaning for the manifest's model hash: the digest of the tensors in the card, the same from
    a file, a copy of it with an edited card, a loaded model and a layer's provenance."""
    import json
    import shutil

    import numpy as np

    from napari_attnseg import create_model, load_model, predict, save_model
    from napari_attnseg.checkpoint import file_sha256, model_identity, tensors_sha256
    from napari_attnseg.layers import provenance

    torch.manual_seed(0)
    model = create_model("unet", spatial_dims=2, features=[4, 8])
    path = tmp_path / "m.safetensors"
    card = save_model(model, path, {"name": "tiny"})
    digest = tensors_sha256({k: v.detach().cpu() for k, v in model.state_dict().items()})
    assert card.weights_sha256 == digest != file_sha256(path)  # not the file's bytes
    want = {"model": "tiny", "weights_sha256": digest}
    assert model_identity(str(path)) == want == model_identity(path)
    loaded = load_model(path)
    assert model_identity(loaded) == want
    pred = predict(loaded, np.zeros((16, 16), np.float32), device="cpu")
    assert model_identity(provenance(loaded, pred, "image")) == want  # what the panel has on the layer
    # the same weights under another card description and file name: the same identity
    other = tmp_path / "copy.safetensors"
    shutil.copy(path, other)
    side = json.loads(path.with_suffix(".json").read_text())
    side["description"] = "edited"
    other.with_suffix(".json").write_text(json.dumps(side))
    assert model_identity(other)["weights_sha256"] == digest
