"""'Review this slice next': uncertainty maps, slice ranking, `attnseg suggest`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_attnseg import create_model, save_model
from napari_attnseg.checkpoint import ModelCard
from napari_attnseg.cli import main as cli
from napari_attnseg.suggest import rank_slices, slice_scores, suggest_slices, uncertainty_map


def test_uncertainty_map_entropy_and_flip_disagreement():
    p = np.zeros((2, 4, 4), np.float32)
    p[0] = 1.0
    assert uncertainty_map(p).max() < 1e-4  # certain background
    p[:, 0, 0] = 0.5
    assert uncertainty_map(p)[0, 0] == pytest.approx(1.0, abs=1e-4)  # a coin toss
    q = p.copy()
    q[:, 3, 3] = [0.0, 1.0]  # the mirrored pass says foreground where the first said background
    u = uncertainty_map(p, q)
    assert u[3, 3] == pytest.approx(1.0) and u[1, 1] < 1e-4


def test_planted_false_positives_far_from_the_reviewed_slices_rank_first():
    rng = np.random.default_rng(0)
    probs = np.zeros((2, 30, 16, 16), np.float32)
    probs[1] = rng.uniform(0, 0.02, probs.shape[1:])
    probs[1, 25, 4:10, 4:10] = 0.6  # false positives the model is unsure of, far from the reviewed slices
    probs[1, 8, 4:10, 4:10] = 0.6  # as unsure, but next to reviewed slice 7
    probs[1, 12, 6:8, 6:8] = 0.5  # a smaller doubt
    probs[0] = 1 - probs[1]
    ranked = rank_slices(slice_scores(uncertainty_map(probs)), reviewed=[5, 6, 7], n=3)
    assert [i for i, _ in ranked][:2] == [25, 12]
    assert all(i not in (5, 6, 7) for i, _ in ranked) and ranked[0][1] >= ranked[1][1] >= ranked[2][1]
    # suggestions are spread: the neighbours of a picked slice come after the others
    probs[1, 24, 4:10, 4:10] = 0.6
    probs[0] = 1 - probs[1]
    first = [i for i, _ in rank_slices(slice_scores(uncertainty_map(probs)), reviewed=[5, 6, 7], n=2)]
    assert first == [24, 12] or first == [25, 12]


def test_thin_slices_do_not_bring_the_neighbours_of_one_finding():
    """Audit on a CT of 2.5 mm slices: 14, 16, 18, 12 suggested, four views of one doubt. With the slice
    distance known, suggestions lie 10 mm apart while others remain; 5 mm slices rank as before."""
    scores = np.full(60, 0.01)
    scores[10:16] = np.linspace(0.10, 0.12, 6)  # one uncertain finding over 6 thin slices (15 mm at 2.5 mm)
    scores[40] = 0.05
    scores[55] = 0.03
    plain = [i for i, _ in rank_slices(scores, n=3)]
    assert plain == [15, 13, 11]
    thin = [i for i, _ in rank_slices(scores, n=3, slice_mm=2.5)]
    assert thin == [15, 11, 40]  # 4 slices = 10 mm apart
    assert [i for i, _ in rank_slices(scores, n=3, slice_mm=5.0)] == plain
    assert len(rank_slices(scores, n=20, slice_mm=2.5)) == 20  # too few far apart: the rest fill in


def _volume(seed=0, shape=(16, 40, 40)):
    rng = np.random.default_rng(seed)
    img = rng.normal(0, 0.2, shape).astype(np.float32)
    lab = np.zeros(shape, np.int64)
    yy, xx = np.indices(shape[1:])
    for z in range(shape[0]):
        for _ in range(2):
            cy, cx, r = rng.uniform(8, 32), rng.uniform(8, 32), rng.uniform(3, 6)
            lab[z][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    img += lab * 2.0
    return img, lab


def test_suggester_ranks_a_slice_with_planted_false_positives_first(tmp_path):
    """A small model learns bright discs; a test volume of plain background gets one slice with a half-bright
    disc (a planted false positive the model is unsure of): that slice is suggested first, the CLI prints it."""
    from napari_attnseg.training.losses import dice_ce_loss

    torch.manual_seed(0)
    model = create_model("unet", spatial_dims=2, features=[8, 16, 32])
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    img, lab = _volume()
    x, y = torch.from_numpy(img[:, None]), torch.from_numpy(lab)
    for _ in range(60):
        loss = dice_ce_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test = np.random.default_rng(1).normal(0, 0.2, (16, 40, 40)).astype(np.float32)
    yy, xx = np.indices((40, 40))
    test[12][(yy - 20) ** 2 + (xx - 20) ** 2 <= 36] += 1.0  # half as bright as the discs it learnt
    norm = {"scheme": "none"}
    ranked = suggest_slices(model, test, reviewed=[2, 3], n=3, normalization=norm, device="cpu")
    assert ranked[0][0] == 12, ranked
    path = tmp_path / "m.safetensors"
    save_model(model, path, ModelCard(arch="", config={}, name="discs", normalization=norm, tile=[40, 40]))
    from napari_attnseg.data.io import write_image

    write_image(tmp_path / "vol.nii.gz", test)
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli(["suggest", str(tmp_path / "vol.nii.gz"), "--model", str(path), "--reviewed", "2-3", "-n", "2",
                    "--device", "cpu"]) == 0
    lines = buf.getvalue().split("\n")
    assert lines[0] == "slice\tscore" and lines[1].split("\t")[0] == "12", buf.getvalue()
