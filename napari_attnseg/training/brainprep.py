"""The training images as inference will prepare them for the model: a start model whose card asks for
brain extraction (``"brain_extraction": "auto"``, the bundled ``brain-mri-3d``) learnt on skull-stripped
brains, and inference strips skull and scalp from every scan that still has them
(:func:`~napari_attnseg.inference.brain.with_brain_extraction`). Fine-tuning it on scans straight from
the scanner strips each case the same way and in the same order: on the whole case at its stored spacing (after
the orientation turn), with the same :func:`~napari_attnseg.inference.brain.extract_brain_fast` and
:func:`~napari_attnseg.inference.brain.apply_brain_mask`, THEN resampled to the start model's spacing
(:mod:`.resampling`), unless the case looks stripped already or is a CT in Hounsfield units; so the model trains
on what it will be fed. (Stripping the resampled case instead, as before, found another brain: brain1, 6.5 mm
slices resampled to 2 mm, kept the scalp over the vertex, brain-mask Dice 0.76 against inference's.) The brain
mask on the model's grid, for the validation (predictions outside it are background, as inference leaves them),
is the stored mask resampled as the labels are (nearest). The labels stay as they are (the loss is on the same
voxels), and the fine-tuned card keeps the field.

:class:`BrainInputs` is a mixin of :class:`~.trainer.Trainer`. Pure numpy/scipy: no Qt.
"""

from __future__ import annotations

import numpy as np


def brain_extraction_applies(card, image: np.ndarray) -> bool:
    """Whether inference with the model of ``card`` strips skull and scalp from ``image`` (channels first, as
    stored) when nothing overrides the card: the rule of ``inference/engine.py``."""
    from ..display import is_hounsfield

    if getattr(card, "brain_extraction", None) != "auto":
        return False
    if card.spatial_dims != 3 or card.in_channels != 1 or image.shape[0] != 1 or image.ndim != 4:
        return False
    return not is_hounsfield(image[0])  # a CT is not an MRI head with a scalp to strip


class BrainInputs:
    """The images the model trains and validates on (see the module docstring)."""

    def _strip_as_inference(self, stored: list[tuple], plans: list) -> None:
        """Per case, the image (channels first) as inference will hand it to the model, before normalisation:
        skull and scalp stripped from the ``stored`` case (turned, not yet resampled) at its own spacing when the
        start model's card asks for it and the case has them, then resampled by the case's plan (``plans``, None:
        as stored) as ``self.raw``'s images were. Also the brain masks on the model's grid (None: not stripped)."""
        from ..inference.brain import apply_brain_mask, extract_brain_fast
        from .resampling import resample_image, resample_mask

        card = _start_card(self.cfg.start_model)
        self._inputs, self.brain_masks, stripped, kept = [], [], [], []
        self._stripping, self._stats_sources = {}, []
        for cid, (img, _lab, spacing), (model_img, _, _), plan in zip(self.case_ids, stored, self.raw, plans):
            found = None
            if card is not None and brain_extraction_applies(card, img):
                found = extract_brain_fast(img[0], spacing)
                (stripped if found.applied else kept).append((cid, found.removed_share))
                self._stripping[str(cid)] = {"applied": found.applied, "removed_share": round(found.removed_share, 4)}
            if found is None or not found.applied:
                self._stats_sources.append(img)
                self._inputs.append(model_img)
                self.brain_masks.append(None)
                continue
            source = apply_brain_mask(img[0], found.mask)[None]
            self._stats_sources.append(source)
            self._inputs.append(source if plan is None else resample_image(source, plan))
            self.brain_masks.append(found.mask if plan is None else resample_mask(found.mask, plan))
        if stripped or kept:
            self.notes.append(_note(stripped, kept))

    def _model_inputs(self) -> list[np.ndarray]:
        """Per case, the image (channels first, on the model's grid) as inference will hand it to the model
        before normalising it (:meth:`_strip_as_inference`); the images as they are when that did not run."""
        if getattr(self, "_inputs", None) is None:
            self._inputs, self._stripping = [img for img, _, _ in self.raw], {}
            self.brain_masks = [None] * len(self.raw)
        return self._inputs

    def _normalised_inputs(self, spec) -> list:
        """:meth:`_model_inputs` normalised by ``spec`` with statistics taken, as inference takes them, on the case
        as stored (stripped when it was), not on its resampled copy (brain1 at 2 mm: 99th percentile 898 against
        1028 on the stored scan, so training saw its intensities 1.145x what inference feeds the model)."""
        from ..inference.normalize import apply_stats, compute_stats

        srcs = getattr(self, "_stats_sources", None) or [None] * len(self._model_inputs())
        return [apply_stats(img, compute_stats(img if src is None else src, spec, True))
                for img, src in zip(self._model_inputs(), srcs)]

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


def _start_card(start_model: str | None):
    """The start model's card, or None (from scratch, or a card that cannot be read: loading the model says so)."""
    if not start_model:
        return None
    from ..checkpoint import read_card, resolve_model_path

    try:
        return read_card(resolve_model_path(start_model))
    except Exception:  # noqa: BLE001 - said properly when the model itself is loaded
        return None


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
                     f"will strip them: at the scan's own spacing, before any resampling) before training and validation: {cases(stripped)}; labels kept as they were")
    if kept:
        what = "looks" if len(kept) == 1 else "look"
        parts.append(f"brain extraction, as the start model's card asks: {', '.join(str(c) for c, _ in kept)} {what} "
                     "skull-stripped already, left as is (as inference will leave it)")
    return "; ".join(parts)
