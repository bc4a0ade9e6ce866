"""The training images as inference will prepare them for the model: a start model whose card asks for
brain extraction (``"brain_extraction": "auto"``, the bundled ``brain-mri-3d``) learnt on skull-stripped
brains, and inference strips skull and scalp from every scan that still has them
(:func:`~napari_attnseg.inference.brain.with_brain_extraction`). Fine-tuning it on scans straight from
the scanner strips each case the same way (the same :func:`~napari_attnseg.inference.brain.extract_brain_fast`
and :func:`~napari_attnseg.inference.brain.apply_brain_mask`, on the whole case at its spacing, unless the
case looks stripped already or is a CT in Hounsfield units), so the model trains on what it will be fed.
The labels stay as they are (the loss is on the same voxels), and the fine-tuned card keeps the field.

:class:`BrainInputs` is a mixin of :class:`~.trainer.Trainer`. Pure numpy/scipy: no Qt.
"""

from __future__ import annotations

import numpy as np


def brain_extraction_applies(card, model, image: np.ndarray) -> bool:
    """Whether inference with ``model`` (whose card is ``card``) strips skull and scalp from ``image``
    (channels first) when nothing overrides the card: the rule of ``inference/engine.py``."""
    from ..display import is_hounsfield

    if getattr(card, "brain_extraction", None) != "auto":
        return False
    if model.spatial_dims != 3 or model.in_channels != 1 or image.shape[0] != 1 or image.ndim != 4:
        return False
    return not is_hounsfield(image[0])  # a CT is not an MRI head with a scalp to strip


class BrainInputs:
    """The images the model trains and validates on (see the module docstring)."""

    def _model_inputs(self) -> list[np.ndarray]:
        """Per case, the raw image (channels first) as inference will hand it to the model: stripped of
        skull and scalp when the start model's card asks for it and the case has them. Computed once."""
        if getattr(self, "_inputs", None) is not None:
            return self._inputs
        from ..inference.brain import apply_brain_mask, extract_brain_fast

        card = self.base_card
        self._inputs, self.brain_masks, stripped, kept = [], [], [], []
        self._stripping = {}
        for cid, (img, _lab, spacing) in zip(self.case_ids, self.raw):
            found = None
            if card is not None and brain_extraction_applies(card, self.model, img):
                found = extract_brain_fast(img[0], spacing)
                (stripped if found.applied else kept).append((cid, found.removed_share))
                self._stripping[str(cid)] = {"applied": found.applied, "removed_share": round(found.removed_share, 4)}
            applied = found is not None and found.applied
            self._inputs.append(apply_brain_mask(img[0], found.mask)[None] if applied else img)
            self.brain_masks.append(found.mask if applied else None)
        if stripped or kept:
            self.notes.append(_note(stripped, kept))
        return self._inputs

    def _brain_record(self) -> dict:
        """For the card's ``training``: what brain extraction did to each case (nothing when the start model's
        card does not ask for it)."""
        found = getattr(self, "_stripping", None)
        return {"brain_extraction": found} if found else {}

    def _remember_part_mask(self, case: int, img: np.ndarray, outer) -> None:
        """A held-out part's image (with context) cut from a stripped case: the brain mask over the same box."""
        masks = getattr(self, "brain_masks", None)
        if masks and masks[case] is not None:
            self.__dict__.setdefault("_part_masks", {})[id(img)] = (img, masks[case][tuple(outer)])

    def _brain_only(self, labels, img: np.ndarray) -> np.ndarray:
        """The labels predicted on a held-out part's ``img``, background outside the brain mask as inference
        leaves them (so the validation Dice is the Dice a user gets); unchanged for unstripped cases."""
        labels = np.asarray(labels)
        found = getattr(self, "_part_masks", {}).get(id(img))
        if found is None or found[0] is not img or found[1].shape != labels.shape:
            return labels
        labels = labels.copy()
        labels[~found[1]] = 0
        return labels


def _note(stripped: list[tuple[str, float]], kept: list[tuple[str, float]]) -> str:
    """What the run did to the images, for the card's notes and the training summary."""

    def cases(found):
        if len(found) == 1:
            return f"{found[0][0]} (removed {found[0][1]:.0%} of the head's voxels)"
        shares = [s for _, s in found]
        return f"{len(found)} cases (removed {min(shares):.0%}-{max(shares):.0%} of the head's voxels)"

    parts = []
    if stripped:
        parts.append(f"skull and scalp stripped as the start model's card asks (brain_extraction \"auto\", as inference "
                     f"will strip them) before training and validation: {cases(stripped)}; labels kept as they were")
    if kept:
        what = "looks" if len(kept) == 1 else "look"
        parts.append(f"brain extraction, as the start model's card asks: {', '.join(str(c) for c, _ in kept)} {what} "
                     "skull-stripped already, left as is (as inference will leave it)")
    return "; ".join(parts)
