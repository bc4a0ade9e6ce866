"""Patch sampling with foreground oversampling (about a third of patches centred on foreground)."""

from __future__ import annotations

import numpy as np

from .losses import WEAK


def parse_region(text: str | None, ndim: int) -> tuple[slice, ...] | None:
    """``"0:512,0:224"`` -> slices; missing axes cover everything. None stays None."""
    if not text:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > ndim:
        raise ValueError(f"region {text!r} has {len(parts)} axes; the data has {ndim}")
    out = []
    for p in parts:
        lo, _, hi = p.partition(":")
        out.append(slice(int(lo) if lo else None, int(hi) if hi else None))
    return tuple(out) + (slice(None),) * (ndim - len(out))


class PatchSampler:
    """Draws (image, label) patches of ``patch`` size from (C, *S) arrays.

    For a 2D model on volumes pass a patch with a leading 1 (e.g. (1, 128, 128)): patches are slices.
    """

    def __init__(self, images, labels, patch, rng: np.random.Generator, fg_fraction: float = 0.33,
                 ignore_index: int | None = None, hard=None, hard_fraction: float = 0.0):
        """``hard``: per array, coordinates of hard negatives (labelled background a start model called
        foreground); ``hard_fraction`` of the patches are centred on them."""
        self.images, self.labels, self.patch = images, labels, tuple(int(p) for p in patch)
        self.rng, self.fg_fraction, self.ignore = rng, fg_fraction, ignore_index
        self.hard = None
        self.hard_fraction = hard_fraction if hard is not None else 0.0
        self.weak, self.weak_at, self.weak_fraction = None, None, 0.0
        if hard is not None:
            self.set_hard(hard)
        self.fg, self.labelled = [], []
        for lab in labels:
            fg = lab > 0
            labelled = None
            if ignore_index is not None and ignore_index >= 0 and (lab == ignore_index).any():
                fg &= lab != ignore_index
                labelled = self._subsample(np.argwhere(lab != ignore_index), rng)  # sparse annotation
            self.fg.append(self._subsample(np.argwhere(fg), rng))
            self.labelled.append(labelled)
        self._set_weights()

    def _set_weights(self) -> None:
        """How often each array is drawn: by its labelled voxels ('ignore' left out), plus its far negatives. By
        size, a few reviewed slices were drawn as often as the unreviewed slab around them: in the lung1 loop
        (reviewed 19, 21, 32, 34; the split's parts 0-20, 22-33, 35-47, and the refit's one-slice parts 21 and 34)
        28 % of the patches were all 'ignore' (no loss), 8 % held the tumour, and the refit drew slice 34 for 2 %:
        trained on it, the model still gave its tumour a probability of 4e-6."""
        if getattr(self, "_labelled_counts", None) is None:  # (once: far negatives call this every epoch)
            self._labelled_counts = np.array([lab.size if self.ignore is None or self.ignore < 0 else
                                              np.count_nonzero(lab != self.ignore) for lab in self.labels], float)
        weights = self._labelled_counts.copy()
        # reviewed slices ('ignore' elsewhere): the foreground share is drawn from the parts that hold foreground. One
        # case cut into training parts at the validation slices has it in one of them (lung1: parts 0-20 and 22-33,
        # the tumour on 32), so half the draws meant for foreground fell on a part without any: 16 % of the patches
        # held the tumour, not the third this sampler is for
        sparse = any(lab is not None for lab in self.labelled)
        has_fg = np.array([len(f) > 0 for f in self.fg], float)
        self._fg_weights = None
        if sparse and has_fg.any() and not has_fg.all():
            fg_w = self._labelled_counts * has_fg
            self._fg_weights = fg_w / fg_w.sum() if fg_w.sum() > 0 else None
        if self.weak is not None:
            weights += [np.count_nonzero(w) for w in self.weak]
        if weights.sum() <= 0:  # (nothing labelled anywhere: drawn by size, as before)
            weights = np.array([lab.size for lab in self.labels], float)
        self.weights = weights / weights.sum()

    def set_hard(self, hard) -> None:
        """Replace the hard-negative coordinates (one array per image)."""
        self.hard = [self._subsample(np.asarray(h), self.rng) for h in hard]

    def set_weak(self, masks, fraction: float) -> None:
        """Far negatives (see :mod:`.far`): per array a bool mask of unlabelled voxels to train towards
        background with a low weight (they come out of :meth:`sample` as :data:`~.losses.WEAK`);
        ``fraction`` of the patches are centred on them."""
        self.weak = [np.asarray(m, bool) for m in masks]
        self.weak_at = [self._subsample(np.argwhere(m), self.rng) for m in self.weak]
        self.weak_fraction = fraction if any(len(w) for w in self.weak_at) else 0.0
        self._set_weights()  # (an unreviewed slab with far negatives is drawn for them)

    def _around(self, centre) -> list[int]:
        """A patch start near ``centre`` (it lands within a quarter patch of the middle)."""
        return [int(c) - p // 2 + int(self.rng.integers(-(p // 4), p // 4 + 1)) for c, p in zip(centre, self.patch)]

    @staticmethod
    def _subsample(coords: np.ndarray, rng: np.random.Generator, n: int = 20000) -> np.ndarray:
        return coords[rng.choice(len(coords), n, replace=False)] if len(coords) > n else coords

    def sample(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for _ in range(batch):
            i = int(self.rng.choice(len(self.images), p=self.weights))
            r = self.rng.random()
            if r < self.fg_fraction and self._fg_weights is not None and not len(self.fg[i]):
                i = int(self.rng.choice(len(self.images), p=self._fg_weights))
            img, lab = self.images[i], self.labels[i]
            shape = lab.shape
            if r < self.fg_fraction and len(self.fg[i]):
                centre = self.fg[i][self.rng.integers(len(self.fg[i]))]
                start = [int(c) - p // 2 for c, p in zip(centre, self.patch)]
            elif self.hard is not None and r < self.fg_fraction + self.hard_fraction and len(self.hard[i]):
                centre = self.hard[i][self.rng.integers(len(self.hard[i]))]
                start = self._around(centre)
            elif (self.weak_at is not None and r < self.fg_fraction + self.hard_fraction + self.weak_fraction
                  and len(self.weak_at[i])):
                centre = self.weak_at[i][self.rng.integers(len(self.weak_at[i]))]
                start = self._around(centre)
            elif self.labelled[i] is not None and len(self.labelled[i]):
                # sparse annotation: centre the patch on a labelled voxel so it carries some loss
                centre = self.labelled[i][self.rng.integers(len(self.labelled[i]))]
                start = self._around(centre)
            else:
                start = [int(self.rng.integers(0, max(s - p, 0) + 1)) for s, p in zip(shape, self.patch)]
            start = [min(max(st, 0), max(s - p, 0)) for st, s, p in zip(start, shape, self.patch)]
            region = tuple(slice(st, st + p) for st, p in zip(start, self.patch))
            x = img[(slice(None), *region)]
            y = lab[region]
            if self.weak is not None and self.ignore is not None:
                y = np.where(self.weak[i][region] & (y == self.ignore), WEAK, y.astype(np.int64))
            pads = [(0, p - n) for p, n in zip(self.patch, y.shape)]
            if any(pd[1] for pd in pads):
                x = np.pad(x, [(0, 0), *pads], mode="edge")
                y = np.pad(y, pads, mode="constant", constant_values=self.ignore if self.ignore is not None else 0)
            xs.append(x)
            ys.append(y)
        return np.stack(xs).astype(np.float32), np.stack(ys).astype(np.int64)
