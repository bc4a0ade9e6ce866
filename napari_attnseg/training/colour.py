"""RGB pictures in a dataset (a TIFF folder of (Y, X, 3) images made elsewhere): read as ``attnseg predict`` reads
them for the model trained.

- Fine-tuning a one-channel model (``nuclei-2d``): each picture's grey, its one varying colour or, for a bright-field
  H&E / IHC slide, its hematoxylin (:func:`~napari_attnseg.cohort.inputs.grey_of_colour`, the choice predict and
  export make), so the model learns from the image it will be given.
- Training from scratch (or from a model that reads 3 or 4 channels): the colours are the channels
  (``in_channels`` 3), and predict gives such a model an RGB picture's colours the same way. A start model of 4
  channels (trained on opaque RGBA pictures) gets the constant alpha the reader dropped back, as predict gives it.
"""

from __future__ import annotations

import numpy as np

from ..data.alpha import with_alpha
from ..data.dataset import Case
from ..errors import DatasetError


def start_channels(start_model: str | None) -> int | None:
    """The channels the start model reads (its card), or None (from scratch, or a card that cannot be read:
    loading the model says so)."""
    if not start_model:
        return None
    from ..checkpoint import read_card, resolve_model_path

    try:
        return read_card(resolve_model_path(start_model)).in_channels
    except Exception:  # noqa: BLE001 - said properly when the model itself is loaded
        return None


class ColourCases:
    """Loads cases, an RGB picture turned to the start model's one channel as predict turns it; ``notes``."""

    def __init__(self, start_model: str | None) -> None:
        self.channels = start_channels(start_model)
        self.grey: dict[str, str] = {}  # case id -> note
        self.alpha: dict[str, float] = {}  # case id -> the constant alpha put back for a start model of 4 channels
        self.colour = False

    def load(self, case: Case) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
        image, labels, spacing = case.load()
        if case.colour is None:
            return image, labels, spacing
        self.colour = True
        if self.channels == 4 and image.shape[0] == 3 and (value := self._dropped_alpha(case)) is not None:
            self.alpha[case.case_id] = value  # (an opaque RGBA read as RGB: the alpha the start model was trained with)
            return with_alpha(image, value, 0), labels, spacing
        if self.channels != 1:
            if image.shape[0] == 4 and self.channels != 4:  # real transparency (an opaque alpha was dropped when read)
                from ..data.alpha import transparency_message

                picture = image.astype(case.colour) if np.dtype(case.colour).kind in "ui" else image
                raise DatasetError(f"Case {case.case_id}: " + transparency_message(case.image_paths[0].name, picture, 0))
            return image, labels, spacing
        from ..cohort.inputs import grey_of_colour

        picture = image.astype(case.colour) if np.dtype(case.colour).kind in "ui" else image
        found = grey_of_colour(picture, ax=0)
        if found is None:
            raise DatasetError(
                f"Case {case.case_id}: {case.image_paths[0].name} is an RGB picture whose colours hold different images "
                "(not grey, one stain or a bright-field H&E / IHC slide), and the start model reads one channel. Save "
                "the colour to learn from as a grey TIFF (or add the picture with `attnseg export --channel K`, 0 red, "
                "1 green, 2 blue), or train a new model on all its colours (attnseg train, no start model).")
        grey, _k, note = found
        self.grey[case.case_id] = note
        return np.asarray(grey, np.float32)[None], labels, spacing

    @staticmethod
    def _dropped_alpha(case: Case) -> float | None:
        """The constant alpha the reader dropped from the case's picture (read again for its meta), or None."""
        from ..data.alpha import dropped_alpha

        if len(case.image_paths) != 1:
            return None
        return dropped_alpha(case._read(case.image_paths[0]).meta)

    @property
    def notes(self) -> list[str]:
        if self.alpha:
            values = ", ".join(f"{v:g}" for v in sorted(set(self.alpha.values())))
            return [f"{len(self.alpha)} case(s) are RGBA pictures whose alpha is one value ({values}) throughout, read "
                    "as RGB; the start model reads 4 channels (RGBA, as it was trained), so each is given its colours "
                    "and that alpha"]
        if self.grey:
            kinds = sorted(set(self.grey.values()))
            return [f"{len(self.grey)} case(s) are RGB pictures and the start model reads one channel: each is read as "
                    f"attnseg predict reads it ({'; '.join(k.rstrip('.') for k in kinds)})"]
        if self.colour and self.channels is None:
            return ["the images are RGB pictures: the model learns from their colours as channels (in_channels 3), "
                    "and attnseg predict gives it an RGB picture's colours the same way; to learn from their grey or "
                    "hematoxylin instead (as nuclei-2d reads them), fine-tune a one-channel model (attnseg finetune "
                    "--model nuclei-2d) or export the pictures with attnseg export --grey into another dataset folder (a dataset holds "
                    "grey or colour cases), which writes that grey image"]
        return []
