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
    x = torch.randn(1, 1, 48, 48)
    with torch.no_grad():
        a, b = model(x), load_model(path16, device="cpu")(x)
    assert torch.equal(a.argmax(1), b.argmax(1)) or (a - b).abs().max() < 1e-2


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
    save_file(tensors, str(path), metadata={"napari_attnseg_card": json.dumps(card)})
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
