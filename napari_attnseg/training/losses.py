"""Dice + cross-entropy that ignores the ``ignore`` label entirely (no loss, no gradient, no metric)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    """Mean of soft Dice (foreground classes, batch-pooled) and cross-entropy over labelled voxels.

    Args:
        logits: (B, K, *spatial); target: (B, *spatial) integer classes, ``ignore_index`` where unlabelled.
    """
    k = logits.shape[1]
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    if not valid.any():
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits.float(), safe, reduction="none")
    ce = (ce * valid).sum() / valid.sum()
    probs = torch.softmax(logits.float(), 1)
    onehot = F.one_hot(safe, k).movedim(-1, 1).float()
    m = valid.unsqueeze(1).float()
    dims = (0, *range(2, logits.dim()))
    inter = (probs * onehot * m).sum(dims)
    denom = (probs * m).sum(dims) + (onehot * m).sum(dims)
    dice = (2 * inter + 1e-5) / (denom + 1e-5)
    return ce + (1 - dice[1:].mean() if k > 1 else 1 - dice.mean())


def total_loss(out, target: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    """The training loss of a ``TrainOutput``: Dice + CE on the main logits (times ``main_weight``) and on
    every ``(weight, logits)`` head (deep supervision, TransFuse's 0.5/0.3/0.2), plus the model's
    already-weighted ``aux_loss`` (msga's guided and reconstruction losses)."""
    loss = out.logits.new_zeros((), dtype=torch.float32)
    if out.main_weight:
        loss = loss + out.main_weight * dice_ce_loss(out.logits, target, ignore_index)
    for weight, head in out.heads:
        loss = loss + weight * dice_ce_loss(head, target, ignore_index)
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
