"""Validation of a big 2D held-out part on a fixed set of blocks.

Why: a run validates the start model at setup and the model after every epoch. On one big 2D image
(nuclei-2d fine-tuned on a 6000 x 6000 export, 1-minute budget, 2 shared cores) the held-out
1200 x 6000 part was segmented whole each time, most of the setup before the first epoch.

What: a 2D validation part of more than ``VAL_MAX_PX`` px is cut into the blocks the false-positive
search uses (:func:`.setup._blocks`, about ``FP_BLOCK`` px a side) and validated on a few of them, at
most ``VAL_MAX_PX`` px in all, spread evenly over the blocks that hold labelled foreground (else labelled pixels). The set is fixed
for the run: the start model and every epoch are scored on the same pixels, so the comparison stays
fair. Each block is segmented in its context (half a tile of image around it), as a whole part is; the
counts of the blocks are pooled per case, as those of several parts are. The split text (summary, card)
says which share was validated. Smaller parts, volumes, test parts and click-prompt runs are validated
whole, as before.
"""

from __future__ import annotations

import numpy as np

from .split import Part, _labelled

VAL_MAX_PX = 2 * 1024 ** 2  # a 2D validation part above this many px is validated on blocks totalling at most this


class EvalParts(list):
    """Held-out parts ready to segment ((image with context, labels, inner slices) each), with the case of
    each (a big part stands for several blocks of one case)."""

    def __init__(self, items=(), cases: list[int] | None = None):
        super().__init__(items)
        self.cases = list(cases) if cases is not None else list(range(len(self)))


def val_blocks(part: Part, labels: np.ndarray, ignore: int | None, max_px: int | None = None) -> list[Part]:
    """``part`` itself, or (a 2D part of more than ``max_px`` px) a fixed, evenly spread set of its blocks
    that hold labelled foreground (or, with none, labelled pixels), at most ``max_px`` px in all (at least
    one block)."""
    from .setup import _blocks  # (setup imports this module)

    max_px = VAL_MAX_PX if max_px is None else max_px
    lab = labels[part.slices]
    if lab.ndim != 2 or lab.size <= max_px:
        return [part]
    (y0, _), (x0, _) = part.box
    blocks = [(ys, xs) for ys, xs in _blocks(lab.shape) if _labelled(lab[ys, xs], ignore).any()]
    # blocks with foreground first: a few blocks of background only would leave the Dice undefined (a slide
    # with sparse cells); the false positives elsewhere are what the training's block search mines
    with_fg = [(ys, xs) for ys, xs in blocks if (_labelled(lab[ys, xs], ignore) & (lab[ys, xs] > 0)).any()]
    blocks = with_fg or blocks
    biggest = max((ys.stop - ys.start) * (xs.stop - xs.start) for ys, xs in blocks)
    k = min(len(blocks), max(1, max_px // biggest))
    chosen = [blocks[(2 * i + 1) * len(blocks) // (2 * k)] for i in range(k)]  # the middle of k equal runs
    return [Part(part.case, ((y0 + ys.start, y0 + ys.stop), (x0 + xs.start, x0 + xs.stop))) for ys, xs in chosen]


def validated_parts(parts: list[Part], labels: list[np.ndarray], ignore: int | None) -> tuple[list[Part], str]:
    """The parts to validate on (big 2D parts replaced by their blocks) and, when any was, what the split's
    validation text should add."""
    out, said = [], []
    for p in parts:
        sub = val_blocks(p, labels[p.case], ignore)
        out.extend(sub)
        if sub != [p]:
            px = sum(s.size for s in sub)
            h, w = (b - a for a, b in p.box)
            said.append(f"{len(sub)} fixed blocks of the {h} x {w} px part, {px:,} of its {p.size:,} px "
                        f"({px / p.size:.0%}; the same for the start model and every epoch)")
    return out, ("validated on " + "; ".join(said)) if said else ""
