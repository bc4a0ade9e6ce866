"""What to do when a start model reads another number of channels than a dataset's images hold."""

from __future__ import annotations


def channel_mismatch(dataset_channels: int, model_channels: int, start_model: str) -> str:
    """The message for fine-tuning ``start_model`` (reading ``model_channels``) on images of ``dataset_channels``.

    A colour model (3 or 4 channels: RGB, RGBA) against grey images: no channel of a grey image makes colour; the
    pictures exported again with their colours (``attnseg export --keep-colour``, the default for a mask a colour
    model made) fit it, as a one-channel model, or a new model, fits these.
    Otherwise the images hold other channels than the model reads: keep the ones it reads, or train on all of them."""
    if dataset_channels == 1 and model_channels in (3, 4):
        return (f"The dataset's images have 1 channel (grey images) but the model {start_model} reads {model_channels} "
                "(colour): export the RGB pictures with their colours into a new dataset folder (attnseg export "
                "--keep-colour; the default for a mask made by a model that reads colour, in napari's Correct tab too) "
                "and fine-tune it there, or fine-tune a 1-channel model on this dataset (e.g. nuclei-2d; `attnseg "
                "models` lists them), or train a new model on it (attnseg train, no start model).")
    return (f"The dataset's images have {dataset_channels} channel(s) but the model {start_model} takes "
            f"{model_channels}: keep the channel(s) it reads (attnseg export --channel K adds an image's channel K), "
            "or train a new model on all of them (attnseg train, no start model).")
