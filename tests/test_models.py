"""Every architecture builds, runs forward/backward on awkward sizes and exposes its attention maps."""

from __future__ import annotations

import json
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
    clone = create_model(model.arch, **json.loads(json.dumps(model.config)))  # JSON round trip
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
    for bad in ({"depth": 0}, {"heads": 0}, {"embed_dim": 30, "heads": 4}, {"dropout": 1.0}, {"width": -1}):
        with pytest.raises(InputError, match="transfuse"):
            create_model("transfuse", **bad)
    with pytest.raises(InputError, match="features"):
        create_model("unet", features=(8,))
    with pytest.raises(InputError, match="upsample"):
        create_model("unet", upsample="nearest")


def test_list_models_has_architectures():
    listing = list_models()
    assert {a["name"] for a in listing["architectures"]} == set(ARCHITECTURES)


def test_grid_attention_gate_is_the_original_design():
    from napari_attnseg.models.attention_unet import GridAttentionGate

    torch.manual_seed(0)
    gate = GridAttentionGate(2, x_channels=6, g_channels=10, inter_channels=6).eval()
    assert gate.theta.kernel_size == (2, 2) and gate.theta.stride == (2, 2) and gate.theta.bias is None
    assert gate.phi.kernel_size == (1, 1) and gate.phi.bias is not None
    assert gate.psi.kernel_size == (1, 1) and gate.psi.out_channels == 1
    assert isinstance(gate.W[0], torch.nn.Conv2d) and gate.W[0].kernel_size == (1, 1)
    assert isinstance(gate.W[1], torch.nn.BatchNorm2d)
    x, g = torch.randn(2, 6, 15, 11), torch.randn(2, 10, 4, 3)  # odd sizes: theta's grid is 7 x 5
    with torch.no_grad():
        y, alpha = gate(x, g)
        theta = gate.theta(x)
        phi = torch.nn.functional.interpolate(gate.phi(g), size=theta.shape[2:], mode="bilinear")
        coarse = torch.sigmoid(gate.psi(torch.relu(theta + phi)))
        expected = torch.nn.functional.interpolate(coarse, size=x.shape[2:], mode="bilinear")
    assert alpha.shape == (2, 1, 15, 11)
    torch.testing.assert_close(alpha, expected)
    torch.testing.assert_close(y, gate.W(expected * x))


def test_attention_unet_3d_multi_gate_and_deep_supervision():
    m = create_model("attention_unet", spatial_dims=3, multi_gate=True, deep_supervision=True,
                     features=(2, 4, 8, 8, 8), upsample="transpose", norm="instance")
    x = torch.randn(1, 1, 17, 18, 21)
    m.eval()
    with torch.no_grad():
        logits, maps = m(x, return_attention=True)
    assert logits.shape == (1, 2, 17, 18, 21)
    assert maps["level4"].shape == (1, 2, 3, 3, 3)  # ceil(size / 8), two gates
    out = m.train().forward_train(x)
    assert len(out.heads) == 4 and all(h.shape == logits.shape for _, h in out.heads)


def test_msga_position_attention_is_danet_pam():
    from napari_attnseg.models.msga import PositionAttention

    torch.manual_seed(0)
    pam = PositionAttention(16)
    with torch.no_grad():
        pam.gamma.fill_(0.7)
        x = torch.randn(2, 16, 5, 6)
        q, k, v = (f(x).flatten(2) for f in (pam.query, pam.key, pam.value))  # (B, C', N), (B, C, N)
        attention = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (B, N, N), no 1/sqrt(d) as in DANet
        expected = 0.7 * (v @ attention.transpose(1, 2)).view(2, 16, 5, 6) + x
        torch.testing.assert_close(pam(x), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(pam.row(x, 7), attention[:, 7])


def test_msga_pixel_attention_is_the_pam_row_of_the_query():
    torch.manual_seed(0)
    m = create_model("msga", **TINY["msga"]).eval()
    x = torch.randn(1, 1, 37, 45)
    row = m.pixel_attention(x, (21, 30), scale=2, step=1)
    assert row.shape == (1, 1, 10, 12)  # ceil(size / 4)
    assert row.min() >= 0 and row.max() == 1
    with torch.no_grad():
        xp, _ = m._pad_to_divisor(x)
        scales, fused = m._features(xp)
        module = m.step1[1]
        feats = module.pam_in(torch.cat([scales[1], fused], 1))
        w = feats.shape[3]
        full = module.pam.row(feats, (21 // 4) * w + 30 // 4).view(1, 1, *feats.shape[2:])[..., :10, :12]
    torch.testing.assert_close(row, full / full.max())
    with pytest.raises(ValueError):
        m.pixel_attention(x, (0, 0), scale=5)


def test_msga_aux_loss_is_weighted_per_sample_and_heads_cover_the_output():
    torch.manual_seed(0)
    m = create_model("msga", **TINY["msga"]).eval()  # eval: batch norm does not mix the samples
    x = torch.randn(3, 1, 33, 40)
    with torch.no_grad():
        batch = m.forward_train(x)
        single = [m.forward_train(x[i : i + 1]).aux_loss for i in range(3)]
    assert batch.aux_loss.ndim == 0 and torch.isfinite(batch.aux_loss) and batch.aux_loss > 0
    torch.testing.assert_close(batch.aux_loss, torch.stack(single).mean(), rtol=1e-4, atol=1e-6)
    assert batch.main_weight == 0 and len(batch.heads) == 8  # 4 scales x 2 steps, all supervised
    refined = torch.stack([h for _, h in batch.heads[4:]]).mean(0)
    torch.testing.assert_close(batch.logits, refined)


def test_transfuse_heads_and_vit_attention_are_what_the_model_uses():
    torch.manual_seed(0)
    m = create_model("transfuse", **TINY["transfuse"]).eval()
    x = torch.randn(1, 1, 50, 35)
    out = m.forward_train(x)
    assert out.main_weight == 0.5 and [w for w, _ in out.heads] == [0.3, 0.2]
    assert all(h.shape == (1, 2, 50, 35) for _, h in out.heads)
    block = m.blocks[-1]
    seq = torch.randn(2, 12, 32)
    with torch.no_grad():
        weights = block.attention_weights(seq)  # the explicit weights shown as the token map
        _, _, v = block._qkv(seq)
        explicit = seq + block.proj((weights @ v).transpose(1, 2).flatten(2))
        explicit = explicit + block.mlp(block.norm2(explicit))
        torch.testing.assert_close(block(seq), explicit, rtol=1e-4, atol=1e-5)  # fused kernel, same maths
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 12))
    with torch.no_grad():
        _, maps = m(x, return_attention=True)
    assert maps["vit tokens"].shape == (1, 1, 4, 3) and maps["vit tokens"].max() == 1


@pytest.mark.skipif(not hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"),
                    reason="this torch has no CPU flash-attention kernel")
def test_msga_position_attention_never_builds_the_hw_by_hw_matrix_on_cpu():
    from torch.utils._python_dispatch import TorchDispatchMode

    from napari_attnseg.models.msga import PositionAttention

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.append(str(func.overloadpacket))
            return func(*args, **(kwargs or {}))

    pam = PositionAttention(64)
    with torch.no_grad(), Ops() as ops:
        pam(torch.randn(1, 64, 12, 10))
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in ops.seen  # the fused kernel
    assert not {"aten.bmm", "aten._softmax"} & set(ops.seen)  # no explicit HW x HW attention
