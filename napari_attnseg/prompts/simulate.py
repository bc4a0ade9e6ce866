"""Simulated clicks for training and the robot clicker (RITM/SAM-style), numpy + scipy.

* :func:`first_click`: the distance-transform maximum inside an object (deepest point).
* :func:`next_click`: in the larger error region - false negatives (positive click) or false
  positives (negative click), whichever reaches deeper (larger distance-transform maximum), at that
  maximum. Deterministic (first maximum in C order), so the benchmark's robot is reproducible.
* :class:`ClickSimulator`: what the trainer calls per batch (``TrainConfig.prompts``): picks an object
  per patch, a previous mask (with probability ``p_threshold`` the threshold guess under the first click,
  computed on the patch's first channel exactly as ``segment_with_prompts`` does for a model whose card
  says ``prompt_init: "threshold"``; otherwise the automatic model's components on it, a perturbed
  reference - eroded, dilated, parts dropped - or empty), a first click, then 0-3 rounds of clicks in the larger
  error of the current model's prediction (fed back as the previous mask, as RITM trains); returns the
  input with the prompt channels and the object's target, and sets the clicks on the model.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage as ndi

from .convert import set_prompts
from .encode import click_channels
from .initial import threshold_guess


def _edt(mask: np.ndarray) -> np.ndarray:
    """Distance to the nearest pixel outside ``mask``, the array's border counting as outside."""
    padded = np.pad(mask, 1)
    return ndi.distance_transform_edt(padded)[tuple(slice(1, -1) for _ in mask.shape)]


def first_click(obj: np.ndarray) -> np.ndarray | None:
    """The deepest pixel of ``obj`` (distance-transform maximum), or None for an empty mask."""
    if not obj.any():
        return None
    d = _edt(obj)
    return np.array(np.unravel_index(int(np.argmax(d)), d.shape), float)


def next_click(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None):
    """``(point, label)`` in the larger error region, or None when prediction and target agree."""
    fn, fp = target & ~pred, pred & ~target
    if valid is not None:
        fn, fp = fn & valid, fp & valid
    if not fn.any() and not fp.any():
        return None
    dn = _edt(fn) if fn.any() else None
    dp = _edt(fp) if fp.any() else None
    if dp is None or (dn is not None and dn.max() >= dp.max()):
        return np.array(np.unravel_index(int(np.argmax(dn)), dn.shape), float), 1
    return np.array(np.unravel_index(int(np.argmax(dp)), dp.shape), float), 0


def perturb(obj: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A wrong previous mask of the object: eroded, dilated, or with a part dropped."""
    kind = rng.integers(3)
    it = int(rng.integers(1, 4))
    if kind == 0:
        out = ndi.binary_erosion(obj, iterations=it)
    elif kind == 1:
        out = ndi.binary_dilation(obj, iterations=it)
    else:  # drop a half-space through a random point of the object
        idx = np.argwhere(obj)
        c = idx[rng.integers(len(idx))]
        normal = rng.normal(size=obj.ndim)
        grids = np.indices(obj.shape)
        side = sum((g - ci) * n for g, ci, n in zip(grids, c, normal)) > 0
        out = obj & side
    return out


def _objects(lab: np.ndarray, valid: np.ndarray, min_size: int) -> list[np.ndarray]:
    objs = []
    for cls in np.unique(lab[valid & (lab > 0)]):
        cc, n = ndi.label((lab == cls) & valid)
        if n == 0:
            continue
        sizes = np.bincount(cc.ravel())[1:]
        objs += [cc == i + 1 for i in np.flatnonzero(sizes >= min_size)]
    return objs


class ClickSimulator:
    """Per-batch click simulation for training; see the module docstring."""

    def __init__(self, model, auto_model, ignore_index: int, rng: np.random.Generator, radius: float = 5.0,
                 max_rounds: int = 3, p_auto: float = 0.4, p_perturb: float = 0.3, min_size: int = 10,
                 p_threshold: float = 0.0):
        self.model, self.auto_model, self.ignore = model, auto_model, ignore_index
        self.rng, self.radius, self.max_rounds = rng, radius, max_rounds
        self.p_auto, self.p_perturb, self.min_size = p_auto, p_perturb, min_size
        self.p_threshold = p_threshold

    @torch.no_grad()
    def _predict(self, model, x: torch.Tensor, clicks=None) -> np.ndarray:
        was = model.training
        model.eval()
        try:
            if clicks is not None:
                set_prompts(model, *clicks)
            logits = model(x)
        finally:
            model.train(was)
        return (logits.float().argmax(1) > 0).cpu().numpy()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rng, b = self.rng, x.shape[0]
        dev = x.device
        ynp = y.cpu().numpy()
        spatial = ynp.shape[1:]
        choice = rng.random(b)
        auto = self._predict(self.auto_model, x) if (choice < self.p_auto).any() and self.auto_model is not None else None
        # drawn only when asked, so runs without it see the same random stream as before
        guess = rng.random(b) < self.p_threshold if self.p_threshold > 0 else np.zeros(b, bool)
        xnp = x[:, 0].float().cpu().numpy() if guess.any() else None
        targets, prevs, pts, labs, valids = [], [], [], [], []
        for i in range(b):
            valid = ynp[i] != self.ignore
            objs = _objects(ynp[i], valid, self.min_size)
            if not objs:  # nothing here: a negative click somewhere, nothing to segment
                targets.append(np.zeros(spatial, bool))
                prevs.append(np.zeros(spatial, bool))
                pts.append(np.array([[rng.integers(s) for s in spatial]], float))
                labs.append(np.array([0]))
                valids.append(valid)
                continue
            obj = objs[rng.integers(len(objs))]
            if guess[i]:
                prev = None  # below, under the first click
            elif auto is not None and choice[i] < self.p_auto:
                cc, _ = ndi.label(auto[i])
                ids = np.unique(cc[obj])
                prev = np.isin(cc, ids[ids > 0])
            elif choice[i] < self.p_auto + self.p_perturb:
                prev = perturb(obj, rng)
            else:
                prev = np.zeros(spatial, bool)
            c = first_click(obj)
            if rng.random() < 0.3:  # some first clicks less central: any pixel at least half as deep
                d = _edt(obj)
                cand = np.argwhere(d >= 0.5 * d.max())
                c = cand[rng.integers(len(cand))].astype(float)
            if prev is None:  # as at inference: the Otsu component under the first click, on the image channel
                prev = threshold_guess(xnp[i], c[None], np.array([1]), enclosed=True)
            targets.append(obj)
            prevs.append(prev)
            pts.append(c[None])
            labs.append(np.array([1]))
            valids.append(valid)
        rounds = rng.integers(0, self.max_rounds + 1, size=b)
        for r in range(1, int(rounds.max()) + 1 if b else 1):
            xin = self._with_prompts(x, prevs, pts, labs)
            pred = self._predict(self.model, xin, (pts, labs))
            for i in range(b):
                if rounds[i] < r:
                    continue
                click = next_click(pred[i], targets[i], valids[i])
                prevs[i] = pred[i]
                if click is not None:
                    pts[i] = np.concatenate([pts[i], click[0][None]])
                    labs[i] = np.append(labs[i], click[1])
        xin = self._with_prompts(x, prevs, pts, labs)
        set_prompts(self.model, pts, labs)
        yobj = np.where(ynp == self.ignore, self.ignore, np.stack(targets).astype(np.int64))
        return xin, torch.from_numpy(yobj).to(dev)

    def _with_prompts(self, x, prevs, pts, labs) -> torch.Tensor:
        chans = np.stack([click_channels(x.shape[2:], p, lab, self.radius, prev)
                          for p, lab, prev in zip(pts, labs, prevs)])
        return torch.cat([x, torch.from_numpy(chans).to(x.device, x.dtype)], 1)


def robot_session(segment, target: np.ndarray, previous: np.ndarray | None, max_clicks: int = 20,
                  stop_iou: float | None = None, *, first: np.ndarray | None = None,
                  next_fn=None) -> tuple[list[float], list[tuple[np.ndarray, int]]]:
    """The robot clicker: ``segment(points, labels, previous) -> mask``; returns the IoU after 0, 1, ...
    clicks (index = clicks; 0 = ``previous``) and the clicks. The first click is ``first`` or the
    object's distance-transform maximum, the next ones ``next_fn(mask, target)`` (default
    :func:`next_click`); stops early at ``stop_iou`` or when the mask is exact."""
    next_fn = next_fn or next_click
    def iou(m):
        union = (m | target).sum()
        return float((m & target).sum() / union) if union else 1.0

    mask = previous.astype(bool) if previous is not None else np.zeros(target.shape, bool)
    ious = [iou(mask)]
    points, labels = [], []
    for _ in range(max_clicks):
        if stop_iou is not None and points and ious[-1] >= stop_iou:  # at least one click: it picks the object
            break
        if labels:
            click = next_fn(mask, target)
        else:  # first: the given point, or the deepest one
            click = (np.asarray(first) if first is not None else first_click(target), 1)
        if click is None or click[0] is None:
            break
        points.append(click[0])
        labels.append(click[1])
        mask = segment(np.array(points), np.array(labels), mask)
        ious.append(iou(mask))
    return ious, list(zip(points, labels))
