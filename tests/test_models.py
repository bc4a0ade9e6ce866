"""Every architecture builds, runs forward/backward on awkward sizes and exposes its attention maps."""

from __future__ import annotations

import math

import pytest
import torch

from napari_attnseg import create_model, list_models
from napari_attnseg.errors import InputError
from napari_attnseg.models.registry import ARCHITECTURES, architecture_class

TINY = {
    "unet": {"features": (4, 8, 16, 32)},
    "attention_unet": {"features": (4, 8, 16, 32, 64)},
    "msga": {"width": 8, "latent": 8},
    "transfuse": {"width": 8, "embed_dim": 32, "depth": 1, "heads": 2},
}
SHAPES = {2: (2, 1, 37, 45), 3: (1, 1, 20, 27, 19)}


def cases():
    for arch in ARCHITECTURES:
        for dims in architecture_class(arch).supported_dims:
            yield arch, dims


@pytest.mark.parametrize("arch,dims", list(cases()))
def test_forward_backward_and_maps(arch, dims):
    torch.manual_seed(0)
    model = create_model(arch, spatial_dims=dims, in_channels=1, out_channels=3, **TINY[arch])
    x = torch.randn(*SHAPES[dims])
    model.eval()
    with torch.no_grad():
        plain = model(x)
        logits, maps = model(x, return_attention=True)
    assert logits.shape == (x.shape[0], 3, *x.shape[2:])
    assert torch.equal(plain, logits), "asking for the maps changed the logits"
    assert list(maps) == list(model.attention_strides)
    if arch != "unet":
        assert maps, f"{arch} returned no attention maps"
    for name, m in maps.items():
        stride = model.attention_strides[name]
        expected = tuple(math.ceil(s / st) for s, st in zip(x.shape[2:], stride))
        assert m.shape[0] == x.shape[0] and m.shape[2:] == expected, (name, m.shape, expected)
        assert m.min() >= 0 and m.max() <= 1, name
    model.train()
    out = model.forward_train(x)
    loss = out.logits.square().mean() + sum(w * h.square().mean() for w, h in out.heads) + out.aux_loss
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_config_rebuilds_same_architecture(arch):
    model = create_model(arch, **TINY[arch])
    clone = create_model(model.arch, **model.config)
    assert clone.config == model.config
    assert [n for n, _ in clone.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert any(n.startswith(model.encoder_prefixes) for n, _ in model.named_parameters())


def test_attention_unet_gate_layout_and_options():
    m = create_model("attention_unet", spatial_dims=2, multi_gate=True, deep_supervision=True, features=(4, 8, 16, 32, 64))
    assert list(m.attention_strides) == ["level2", "level3", "level4"]
    assert m.attention_strides["level2"] == (2, 2)
    x = torch.randn(1, 1, 32, 32)
    m.eval()
    _, maps = m(x, return_attention=True)
    assert maps["level2"].shape == (1, 2, 16, 16)  # two gates -> two heads
    m.train()
    out = m.forward_train(x)
    assert len(out.heads) == 4 and all(h.shape == (1, 2, 32, 32) for _, h in out.heads)


def test_attention_unet_default_parameter_count_close_to_paper():
    m = create_model("attention_unet", spatial_dims=3)
    n = sum(p.numel() for p in m.parameters())
    assert 5.5e6 < n < 7.0e6  # the paper reports ~6.4M for the 3D model


def test_unknown_architecture_lists_valid_names():
    with pytest.raises(InputError) as info:
        create_model("resnet")
    for name in ARCHITECTURES:
        assert name in str(info.value)


def test_bad_config_is_a_clear_error():
    with pytest.raises((InputError, ValueError)):
        create_model("attention_unet", norm="group")
    with pytest.raises(InputError):
        create_model("unet", colour="red")
    with pytest.raises(InputError):
        create_model("msga", spatial_dims=3)


def test_list_models_has_architectures():
    listing = list_models()
    assert {a["name"] for a in listing["architectures"]} == set(ARCHITECTURES)
