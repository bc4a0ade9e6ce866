"""Engine internals that the figures rest on: MONAI's importance map, BN folding on a private copy,
cancellation inside a forward pass, agreement of the fast path with fp32 on a trained model."""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from napari_attnseg import create_model, predict
from napari_attnseg.errors import Cancelled
from napari_attnseg.inference import CancelToken
from napari_attnseg.inference.precision import fold_batch_norms, inference_copy
from napari_attnseg.inference.tiling import block_mean, importance_map
from napari_attnseg.models.base import SegmentationModel


@pytest.mark.parametrize("tile", [(256, 256), (64, 64, 64), (1, 96, 80), (32, 48)])
def test_importance_map_is_monais(tile):
    monai_utils = pytest.importorskip("monai.data.utils")
    theirs = monai_utils.compute_importance_map(tile, mode="gaussian", sigma_scale=0.125).numpy()
    np.testing.assert_allclose(importance_map(tile), theirs, rtol=1e-5, atol=1e-7)


def test_map_weights_are_the_block_mean_of_the_tile_weights():
    w = importance_map((8, 12))
    bm = block_mean(w, (4, 4))
    assert bm.shape == (2, 3)
    assert bm[0, 0] == pytest.approx(w[:4, :4].mean())


def test_folded_copy_matches_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = create_model("attention_unet", features=(4, 8, 16, 32, 64))
    model.train()
    with torch.no_grad():  # non-trivial running statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with inference_copy(model, torch.device("cpu")) as net:
        assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
        x = torch.rand(2, 1, 48, 48)
        model.eval()
        with torch.no_grad():
            ref, ref_maps = model(x, return_attention=True)
            out, maps = net(x.contiguous(memory_format=torch.channels_last), return_attention=True)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    for k in ref_maps:
        torch.testing.assert_close(maps[k], ref_maps[k], rtol=1e-4, atol=1e-4)


def test_fold_skips_batch_norm_without_running_stats():
    seq = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    assert fold_batch_norms(seq) == 0


class SlowModel(SegmentationModel):
    """Twenty 50 ms steps per forward pass: one tile takes a second."""

    arch = "slow"

    def __init__(self):
        super().__init__(2, 1, 2)
        self.size_divisor = 1
        self.attention_strides = OrderedDict()
        self.steps = nn.ModuleList(Sleep() for _ in range(20))
        self.calls = 0

    def forward(self, x, return_attention=False):
        for s in self.steps:
            x = s(x)
        logits = torch.cat([torch.zeros_like(x), x], 1)
        return (logits, OrderedDict()) if return_attention else logits


class Sleep(nn.Module):
    def forward(self, x):
        time.sleep(0.05)
        Sleep.count += 1
        return x


Sleep.count = 0


def test_cancel_interrupts_a_long_forward_pass():
    model = SlowModel()
    model.card = type("Card", (), {"normalization": {"scheme": "none"}, "tile": None, "overlap": 0.0, "spacing": None,
                                   "classes": None})
    token = CancelToken()
    threading.Timer(0.2, token.cancel).start()
    Sleep.count = 0
    t0 = time.perf_counter()
    with pytest.raises(Cancelled):
        predict(model, np.random.rand(64, 64).astype(np.float32), tile=64, cancel=token, precision="fp32")
    elapsed = time.perf_counter() - t0
    # stopped inside the first tile's forward pass (20 steps), not after it
    assert Sleep.count < 20, (Sleep.count, elapsed)


def test_fast_path_mask_agrees_with_fp32_on_a_trained_model():
    """bf16 on a briefly trained attention U-Net (random weights would make the check meaningless).
    After 20 steps many boundary pixels sit near p = 0.5, so bf16 rounding flips a few of them: on an
    Intel Xeon with native bf16 the masks agree at Dice 0.9984 (the check only runs where bf16 is
    fast). tests/test_bundled_models.py holds the bundled nuclei model to 0.999."""
    from napari_attnseg.inference.precision import cpu_has_fast_bf16

    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    def blobs(n=4, size=48):
        img = rng.normal(0.2, 0.1, (n, size, size)).astype(np.float32)
        lab = np.zeros((n, size, size), np.int64)
        yy, xx = np.mgrid[:size, :size]
        for i in range(n):
            for _ in range(6):
                cy, cx, r = rng.uniform(8, size - 8, 2).tolist() + [rng.uniform(4, 8)]
                inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
                img[i][inside] += 0.6
                lab[i][inside] = 1
        return img, lab

    model = create_model("attention_unet", features=(4, 8, 16, 32, 64))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(20):
        img, lab = blobs()
        loss = nn.functional.cross_entropy(model(torch.from_numpy(img)[:, None]), torch.from_numpy(lab))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.card = type("Card", (), {"normalization": {"scheme": "none"}, "tile": [64, 64], "overlap": 0.25,
                                   "spacing": None, "classes": None})
    img, lab = blobs(1, 128)
    ref = predict(model, img[0], precision="fp32", device="cpu").labels
    assert (2 * (ref & lab[0]).sum() / (ref.sum() + lab[0].sum())) > 0.9  # it did learn the task
    for prec in ["bf16"] if cpu_has_fast_bf16() else []:
        fast = predict(model, img[0], precision=prec, device="cpu").labels
        dice = 2 * (fast & ref).sum() / (fast.sum() + ref.sum())
        assert dice >= 0.995, (prec, dice)


def test_probabilities_in_float32_on_request():
    from napari_attnseg.errors import InputError

    img = np.random.default_rng(0).uniform(0.01, 0.99, (40, 50)).astype(np.float32)
    ident = create_model("unet", features=(4, 8, 16))
    p16 = predict(ident, img, tile=32, precision="fp32")
    p32 = predict(ident, img, tile=32, precision="fp32", probability_dtype="float32")
    assert p16.probabilities.dtype == np.float16 and p32.probabilities.dtype == np.float32
    np.testing.assert_allclose(p16.probabilities.astype(np.float32), p32.probabilities, atol=1e-3)
    with pytest.raises(InputError, match="float16 or float32"):
        predict(ident, img, probability_dtype="int8")


def test_inference_copy_is_reused_until_the_weights_change():
    """The folded copy is built once per model and weights: an in-place weight update (an optimizer
    step, load_state_dict) or a concurrent prediction gets a new one, never a stale one."""
    torch.manual_seed(0)
    model = create_model("unet", spatial_dims=2, features=[4, 8, 16]).eval()
    dev = torch.device("cpu")
    with inference_copy(model, dev) as a:
        with inference_copy(model, dev) as busy:  # the first is in use: a private copy
            assert busy is not a
    with inference_copy(model, dev) as b:
        assert b is a
    image = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    before = np.asarray(predict(model, image, precision="fp32").probabilities)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)  # in place, same storage
    with inference_copy(model, dev) as c:
        assert c is not a
    after = np.asarray(predict(model, image, precision="fp32").probabilities)
    fresh = np.asarray(predict(copy.deepcopy(model), image, precision="fp32").probabilities)  # a new model: no cache
    assert not np.allclose(before, after)
    np.testing.assert_array_equal(after, fresh)


@pytest.mark.parametrize("dims", [2, 3])
def test_device_side_blending_matches_the_numpy_path(monkeypatch, dims):
    """The GPU path blends tiles in torch on the device; run that code on the CPU and compare."""
    from napari_attnseg.inference import engine

    torch.manual_seed(0)
    model = create_model("attention_unet", spatial_dims=dims, features=[4, 8, 16, 32], out_channels=3).eval()
    shape = (70, 90) if dims == 2 else (30, 41, 37)
    image = np.random.default_rng(2).random(shape).astype(np.float32)
    kw = dict(tile=32 if dims == 2 else 16, overlap=0.4, attention=True, precision="fp32", device="cpu",
              probability_dtype="float32")
    ref = predict(model, image, **kw)
    monkeypatch.setattr(engine, "_BLEND_ON_DEVICE", True)
    got = predict(model, image, **kw)
    np.testing.assert_allclose(got.probabilities, ref.probabilities, atol=1e-5)
    assert (np.asarray(got.labels) == np.asarray(ref.labels)).mean() > 0.999
    for a, b in zip(got.attention, ref.attention):
        assert a.scale == b.scale and a.translate == b.translate
        np.testing.assert_allclose(a.data.astype(np.float32), b.data.astype(np.float32), atol=1e-3)


def test_predict_and_iter_predict_show_every_parameter():
    """help() lists each option with its type and default; the two functions take the same ones,
    and every one is documented in predict's docstring."""
    import inspect
    import pydoc

    import napari_attnseg
    from napari_attnseg.inference import iter_predict

    sig = inspect.signature(napari_attnseg.predict)
    assert sig.parameters == inspect.signature(iter_predict).parameters
    names = list(sig.parameters)
    assert names[:2] == ["model", "image"] and len(names) == 20 and names[-3:] == ["diameter", "brain_extraction", "orientation"]
    assert "SegmentationModel" in str(sig.parameters["model"].annotation)
    for p in list(sig.parameters.values())[2:]:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.annotation is not inspect.Parameter.empty, p
        assert p.default is not inspect.Parameter.empty, p
    text = pydoc.render_doc(napari_attnseg.predict, renderer=pydoc.plaintext)
    for name in names:
        assert f"{name}:" in text, name
    assert "precision: 'str' = 'auto'" in text and "probability_dtype: 'str' = 'float16'" in text


def test_a_misspelled_option_fails_when_iter_predict_is_called():
    from napari_attnseg.inference import iter_predict

    model = create_model("unet", spatial_dims=2, features=[4, 8])
    with pytest.raises(TypeError, match="overlapp"):
        iter_predict(model, np.zeros((16, 16), np.float32), overlapp=0.5)  # no next() needed
    with pytest.raises(TypeError):
        predict(model, np.zeros((16, 16), np.float32), 0.5)  # options are keyword-only
