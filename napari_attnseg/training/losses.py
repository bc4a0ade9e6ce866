"""Dice + cross-entropy that ignores the ``ignore`` label entirely (no loss, no gradient, no metric)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

WEAK = -2  # a label: unlabelled voxel trained towards background with a low weight (far negatives, see .far)


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None,
                 weak_weight: float = 0.0) -> torch.Tensor:
    """Mean of soft Dice (foreground classes, batch-pooled) and cross-entropy over labelled voxels.

    Args:
        logits: (B, K, *spatial); target: (B, *spatial) integer classes, ``ignore_index`` where unlabelled,
            :data:`WEAK` where an unlabelled voxel counts as background with ``weak_weight`` (in the
            cross-entropy and in the Dice's sums; 0: ignored like ``ignore_index``).
    """
    k = logits.shape[1]
    weak = target == WEAK
    valid = ~weak if ignore_index is None else (target != ignore_index) & ~weak
    safe = torch.where(valid, target, torch.zeros_like(target))
    weak = weak & (weak_weight > 0)
    if not valid.any() and not weak.any():
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits.float(), safe, reduction="none")
    ce = ((ce * valid).sum() + weak_weight * (ce * weak).sum()) / (valid.sum() + weak_weight * weak.sum())
    probs = torch.softmax(logits.float(), 1)
    onehot = F.one_hot(safe, k).movedim(-1, 1).float()
    m = (valid.float() + weak_weight * weak.float()).unsqueeze(1)
    dims = (0, *range(2, logits.dim()))
    inter = (probs * onehot * m).sum(dims)
    denom = (probs * m).sum(dims) + (onehot * m).sum(dims)
    dice = (2 * inter + 1e-5) / (denom + 1e-5)
    return ce + (1 - dice[1:].mean() if k > 1 else 1 - dice.mean())


def total_loss(out, target: torch.Tensor, ignore_index: int | None = None, weak_weight: float = 0.0) -> torch.Tensor:
    """The training loss of a ``TrainOutput``: Dice + CE on the main logits (times ``main_weight``) and on
    every ``(weight, logits)`` head (deep supervision, TransFuse's 0.5/0.3/0.2), plus the model's
    already-weighted ``aux_loss`` (msga's guided and reconstruction losses)."""
    loss = out.logits.new_zeros((), dtype=torch.float32)
    if out.main_weight:
        loss = loss + out.main_weight * dice_ce_loss(out.logits, target, ignore_index, weak_weight)
    for weight, head in out.heads:
        loss = loss + weight * dice_ce_loss(head, target, ignore_index, weak_weight)
    return loss + out.aux_loss


def dice_per_class(pred: np.ndarray, target: np.ndarray, n_classes: int, ignore_index: int | None = None) -> list[float]:
    """Hard Dice per foreground class (1..K-1) over labelled voxels; NaN where a class is absent in both."""
    valid = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    out = []
    for c in range(1, n_classes):
        p = (pred == c) & valid
        t = (target == c) & valid
        denom = int(p.sum()) + int(t.sum())
        out.append(float("nan") if denom == 0 else 2.0 * float((p & t).sum()) / denom)
    return out
