"""The device-resident path (issue 20): the image goes to the model's device a slab at a time, is
normalised and cut into tiles there, and is blended there. On the CPU the same torch code runs, so
it is compared here with the per-tile NumPy reading and the NumPy blending the engine used before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_attnseg import create_model, predict
from napari_attnseg.inference import engine
from napari_attnseg.inference.forward import read_tile
from napari_attnseg.inference.normalize import apply_stats, apply_stats_tensor, compute_stats
from napari_attnseg.inference.slabs import SlabSource, fill_edges, normalised_slab


class PerTileSource:
    """The engine's reading before slabs: every tile read, normalised and padded in NumPy on the host."""

    def __init__(self, image, stats, chan_axis, tile, extent, dev):
        self.image, self.stats, self.chan_axis, self.tile = image, stats, chan_axis, tile
        self.read_s = 0.0

    def tiles(self, batch_starts):
        return torch.from_numpy(np.stack([read_tile(self.image, s, self.tile, self.chan_axis, self.stats)
                                          for s in batch_starts]))

    def prefetch(self, batch_starts):
        pass

    def close(self):
        pass


def _models():
    torch.manual_seed(0)
    m2 = create_model("attention_unet", spatial_dims=2, features=[4, 8, 16, 32], out_channels=3).eval()
    torch.manual_seed(1)
    m3 = create_model("attention_unet", spatial_dims=3, features=[4, 8, 16, 32], out_channels=2).eval()
    torch.manual_seed(2)
    m2c = create_model("attention_unet", spatial_dims=2, in_channels=2, features=[4, 8, 16], out_channels=1).eval()
    return m2, m3, m2c


M2, M3, M2C = _models()
RNG = np.random.default_rng(5)
IMG2 = RNG.random((70, 90)).astype(np.float32)
IMG3 = RNG.random((30, 41, 37)).astype(np.float32)
CT = RNG.integers(-1100, 500, (20, 37, 45)).astype(np.int16)
NAN = IMG2.copy()
NAN[3:7, 10:12] = np.nan
NAN[50, 50] = np.inf
CASES = {
    "2d": (M2, IMG2, dict(tile=32, overlap=0.4, attention=True)),
    "2d no maps": (M2, IMG2, dict(tile=32, overlap=0.4)),
    "2d flips": (M2, IMG2, dict(tile=32, attention=True, tta=True)),
    "2d batch across rows": (M2, IMG2, dict(tile=32, overlap=0.5, attention=True, batch_size=3)),
    "3d": (M3, IMG3, dict(tile=16, overlap=0.4, attention=True)),
    "3d no maps": (M3, IMG3, dict(tile=16, batch_size=5)),
    "3d flips": (M3, IMG3, dict(tile=16, attention=True, tta=True)),
    "3d ct int16": (M3, CT, dict(tile=16, attention=True, normalization={"scheme": "ct", "window": [-1000, 400]})),
    "uint16": (M2, RNG.integers(0, 4000, (61, 75)).astype(np.uint16), dict(tile=32, attention=True)),
    "nan": (M2, NAN, dict(tile=32, attention=True)),
    "big-endian float64": (M2, (RNG.random((33, 65)) * 100).astype(">f8"), dict(tile=32, attention=True)),
    "channels": (M2C, RNG.random((2, 50, 66)).astype(np.float32), dict(tile=32, attention=True)),
    "slices": (M2, RNG.random((5, 40, 50)).astype(np.float32), dict(tile=32, attention=True, batch_size=4)),
    "smaller than a tile": (M2, IMG2[:9, :13], dict(tile=32, attention=True)),
}


def _run(model, image, kw, old: bool, monkeypatch, blend_on_device=None):
    with monkeypatch.context() as m:
        if old:
            m.setattr(engine, "SlabSource", PerTileSource)
            m.setattr(engine, "_BLEND_ON_DEVICE", False)
        else:
            m.setattr(engine, "_BLEND_ON_DEVICE", blend_on_device)
        return predict(model, image, precision="fp32", device="cpu", probability_dtype="float32", **kw)


@pytest.mark.parametrize("blend_on_device", [None, True])
@pytest.mark.parametrize("case", list(CASES))
def test_slab_path_gives_what_the_per_tile_path_gave(case, blend_on_device, monkeypatch):
    model, image, kw = CASES[case]
    old = _run(model, image, kw, True, monkeypatch)
    new = _run(model, image, kw, False, monkeypatch, blend_on_device)
    np.testing.assert_array_equal(new.labels, old.labels)
    np.testing.assert_allclose(new.probabilities, old.probabilities, rtol=0, atol=1e-6)
    assert len(new.attention) == len(old.attention) and bool(new.attention) == bool(kw.get("attention"))
    for a, b in zip(new.attention, old.attention):
        assert a.name == b.name and a.scale == b.scale and a.translate == b.translate and a.data.dtype == b.data.dtype
        np.testing.assert_allclose(a.data.astype(np.float32), b.data.astype(np.float32), rtol=0, atol=1e-3)
    assert new.params == old.params


def _count_host_calls(monkeypatch, image, **kw):
    calls = {"cpu": 0, "numpy": 0, "uploads": 0, "tiles": 0}
    real_cpu, real_numpy, real_init = torch.Tensor.cpu, torch.Tensor.numpy, SlabSource.__init__

    def cpu(self, *a, **k):
        calls["cpu"] += 1
        return real_cpu(self, *a, **k)

    def numpy(self, *a, **k):
        calls["numpy"] += 1
        return real_numpy(self, *a, **k)

    sources = []

    def init(self, *a, **k):
        real_init(self, *a, **k)
        sources.append(self)

    with monkeypatch.context() as m:
        m.setattr(torch.Tensor, "cpu", cpu)
        m.setattr(torch.Tensor, "numpy", numpy)
        m.setattr(SlabSource, "__init__", init)
        m.setattr(engine, "_BLEND_ON_DEVICE", True)  # the code a GPU runs
        m.setattr("napari_attnseg.inference.forward.read_tile", None)  # no per-tile reading left
        pred = predict(M2, image, tile=32, overlap=0.25, batch_size=2, precision="fp32", device="cpu", **kw)
    calls["uploads"] = sources[0].uploads
    calls["tiles"] = pred.params["tiles"]
    return calls


@pytest.mark.parametrize("attention", [False, True])
def test_host_transfers_do_not_grow_with_the_tiles_of_a_slab(monkeypatch, attention):
    """One upload per row of tiles; results come back a few slices at a time, never per tile."""
    narrow = _count_host_calls(monkeypatch, IMG2[:, :48].copy(), attention=attention)
    wide = _count_host_calls(monkeypatch, np.tile(IMG2, (1, 4)), attention=attention)
    assert wide["tiles"] >= 4 * narrow["tiles"] >= 12
    rows = 3  # 70 rows, tiles of 32 at a step of 24 (rounded to the coarsest map stride)
    assert narrow["uploads"] == wide["uploads"] == rows
    assert wide["cpu"] == narrow["cpu"] and wide["numpy"] == narrow["numpy"]
    levels = len(M2.attention_strides) if attention else 0
    assert wide["cpu"] <= 2 * rows + 2 * levels  # labels and probabilities per row, each map once


def test_apply_stats_tensor_is_apply_stats():
    rng = np.random.default_rng(0)
    f = rng.normal(100, 30, (2, 9, 11)).astype(np.float32)
    f[0, 1, 2] = np.nan
    f[1, 3, 4] = -np.inf
    for data, spec in ((f, None), (f, {"scheme": "zscore"}), (f.astype(np.float64), {"scheme": "scale"}),
                       (rng.integers(-1200, 900, (1, 7, 8)).astype(np.int16), {"scheme": "ct", "window": [-200, 300]}),
                       (rng.integers(0, 255, (1, 5, 6, 7)).astype(np.uint8), {"scheme": "none"})):
        stats = compute_stats(data, spec, True)
        expected = apply_stats(data, stats)
        got = apply_stats_tensor(torch.from_numpy(data), stats)
        assert got.dtype == torch.float32
        np.testing.assert_array_equal(got.numpy(), expected)
    before = f.copy()
    apply_stats_tensor(torch.from_numpy(f), compute_stats(f, None, True))
    np.testing.assert_array_equal(f, before)  # the image is never normalised in place


def test_slabs_are_edge_padded_as_numpy_pads():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    slab = torch.full((2, 5, 7), -1.0)
    slab[:, :3, :4] = torch.from_numpy(x)
    np.testing.assert_array_equal(fill_edges(slab, x.shape).numpy(), np.pad(x, [(0, 0), (0, 2), (0, 3)], mode="edge"))
    ints = np.arange(3 * 4 * 5).reshape(1, 3, 4, 5).astype(np.int16)
    stats = compute_stats(ints, {"scheme": "zscore"}, True)
    got = normalised_slab(torch.from_numpy(ints), stats, (1, 4, 4, 8)).numpy()
    np.testing.assert_array_equal(got, np.pad(apply_stats(ints, stats), [(0, 0), (0, 1), (0, 0), (0, 3)], mode="edge"))


@pytest.mark.parametrize("chan_axis", [False, True])
def test_tiles_cut_from_slabs_are_the_tiles_read_one_by_one(chan_axis):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 1000, ((2,) if chan_axis else ()) + (13, 29, 31)).astype(np.int16)
    stats = compute_stats(image, {"scheme": "zscore"}, chan_axis)
    tile, extent = (8, 16, 16), (16, 32, 40)
    src = SlabSource(image, stats, chan_axis, tile, extent, torch.device("cpu"))
    starts = [(0, 0, 0), (0, 8, 24), (0, 16, 16), (8, 0, 8), (8, 16, 24)]
    got = src.tiles(starts[:3]), src.tiles(starts[3:])
    assert src.uploads == 2 and list(src.slabs) == [8]  # the first row was dropped when the second was cut
    expected = np.stack([read_tile(image, s, tile, chan_axis, stats) for s in starts])
    np.testing.assert_array_equal(torch.cat(got).numpy(), expected)


def test_no_cuda_calls_on_the_cpu(monkeypatch):
    """Streams, events and page-locked memory are CUDA-only: on the CPU none of them is touched."""

    def boom(*a, **k):
        raise AssertionError("a CUDA-only call on the CPU")

    for name in ("Stream", "Event", "stream", "current_stream"):
        monkeypatch.setattr(torch.cuda, name, boom)
    monkeypatch.setattr(torch.Tensor, "pin_memory", boom)
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **k: boom() if k.get("pin_memory") else real_empty(*a, **k))
    monkeypatch.setattr(torch.Tensor, "record_stream", boom)
    pred = predict(M2, IMG2, tile=32, attention=True, precision="fp32", device="cpu")
    assert pred.timings["model_s"] > 0 and pred.timings["read_s"] > 0


def test_read_only_memmap_input(tmp_path, recwarn):
    path = tmp_path / "img.npy"
    np.save(path, IMG2)
    mm = np.load(path, mmap_mode="r")
    got = predict(M2, mm, tile=32, precision="fp32", device="cpu")
    np.testing.assert_array_equal(got.labels, predict(M2, IMG2, tile=32, precision="fp32", device="cpu").labels)
    assert not [w for w in recwarn if "writable" in str(w.message)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("case", ["2d", "3d flips", "3d ct int16", "channels", "slices"])
def test_cuda_path_agrees_with_the_cpu(case):
    model, image, kw = CASES[case]
    cpu = predict(model, image, precision="fp32", device="cpu", probability_dtype="float32", **kw)
    gpu = predict(model, image, **dict(kw, precision="fp32", device="cuda", probability_dtype="float32", batch_size=2))
    assert (np.asarray(gpu.labels) == np.asarray(cpu.labels)).mean() > 0.999
    np.testing.assert_allclose(gpu.probabilities, cpu.probabilities, atol=1e-3)
    for a, b in zip(gpu.attention, cpu.attention):
        np.testing.assert_allclose(a.data.astype(np.float32), b.data.astype(np.float32), atol=1e-2)


def test_compiled_twin_is_opt_in_cuda_only_and_hook_free(monkeypatch):
    """ATTNSEG_COMPILE: on CUDA the engine runs a torch.compile'd twin of its inference copy. Checked
    here with dynamo's eager backend on a CPU model passed off as a CUDA one (the wiring, not speed)."""
    from napari_attnseg.inference.precision import build_inference_copy, compiled_twin

    net = build_inference_copy(M2, torch.device("cpu"))
    monkeypatch.delenv("ATTNSEG_COMPILE", raising=False)
    assert compiled_twin(net, torch.device("cuda")) is net  # off by default
    monkeypatch.setenv("ATTNSEG_COMPILE", "1")
    assert compiled_twin(net, torch.device("cpu")) is net  # never on the CPU
    twin = compiled_twin(net, torch.device("cuda"), backend="eager")
    assert twin is not net and compiled_twin(net, torch.device("cuda"), backend="eager") is twin  # kept
    assert any(m._forward_pre_hooks for m in net.modules())  # the cancel hooks stay on the copy...
    assert not any(m._forward_pre_hooks for m in twin.modules())  # ...and are not compiled in
    x = torch.from_numpy(IMG2[None, None, :32, :32].copy())
    with torch.inference_mode():
        (a, ma), (b, mb) = net(x, return_attention=True), twin(x, return_attention=True)
    torch.testing.assert_close(a, b)
    assert list(ma) == list(mb)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_side_stream_uploads_give_what_synchronous_uploads_give(monkeypatch):
    """A missing wait on the side stream would show as tiles cut from a slab not yet uploaded."""
    model, image, kw = CASES["3d ct int16"]
    kw = dict(kw, precision="fp32", device="cuda", probability_dtype="float32", batch_size=3)
    streamed = predict(model, image, **kw)
    real_init = SlabSource.__init__

    def synchronous(self, *a, **k):
        real_init(self, *a, **k)
        self.stream = None

    monkeypatch.setattr(SlabSource, "__init__", synchronous)
    plain = predict(model, image, **kw)
    np.testing.assert_array_equal(streamed.labels, plain.labels)
    np.testing.assert_allclose(streamed.probabilities, plain.probabilities, atol=1e-5)
