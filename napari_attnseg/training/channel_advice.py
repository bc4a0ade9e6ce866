"""What to do when a start model reads another number of channels than a dataset's images hold."""

from __future__ import annotations


def channel_mismatch(dataset_channels: int, model_channels: int, start_model: str) -> str:
    """The message for fine-tuning ``start_model`` (reading ``model_channels``) on images of ``dataset_channels``.

    A colour model (3 or 4 channels: RGB, RGBA) against grey images: ``attnseg export`` writes an RGB picture's grey
    (the image a one-channel model segments), so no channel can be added; a one-channel model, or a new model, fits.
    Otherwise the images hold other channels than the model reads: keep the ones it reads, or train on all of them."""
    if dataset_channels == 1 and model_channels in (3, 4):
        return (f"The dataset's images have 1 channel (grey images: attnseg export writes an RGB picture's grey) but "
                f"the model {start_model} reads {model_channels} (colour): fine-tune a 1-channel model on this "
                "dataset (e.g. nuclei-2d; `attnseg models` lists them), or train a new model on it (attnseg train, "
                "no start model).")
    return (f"The dataset's images have {dataset_channels} channel(s) but the model {start_model} takes "
            f"{model_channels}: keep the channel(s) it reads (attnseg export --channel K adds an image's channel K), "
            "or train a new model on all of them (attnseg train, no start model).")
