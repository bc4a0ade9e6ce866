"""An RGB(A) picture in a fine-tuning dataset: its colours, or the grey image a one-channel model segments of it.

A mask made by a model that reads colours (3 or 4 input channels: trained from scratch on RGB pictures, the colours
its channels) is exported with the picture's colours, so that model can be fine-tuned on its corrections; any other
mask (a one-channel model's: nuclei-2d) with the grey image predict gave that model (its grey, its one colour, or a
bright-field stain's hematoxylin). ``attnseg export --keep-colour`` / ``--grey`` and napari's Correct tab choose the
same way (:func:`picture_for_export`, :func:`colour_layer_export`).

In every layout a colour case is one 2D RGB(A) TIFF (``Y, X, 3|4``) beside a TIFF of its labels: nnU-Net v2 stores a
natural image's colours in one file (its only exception to one file per channel; ``NaturalImage2DIO`` reads .png,
.bmp and .tif), with ``channel_names`` R, G, B and the dataset's ``file_ending`` ``.tif``; MONAI's ``LoadImage``
reads the TIFF with its colours last; and napari-attnseg's dataset reader reads a (Y, X, 3|4) picture with (Y, X)
labels as colours (``Case.colour``), so fine-tuning a one-channel model on it still gets each picture's grey.
A dataset holds one kind: grey cases and colour cases are never mixed (:func:`check_same_kind`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, InputError
from .volume import Volume

COLOUR_CHANNELS = ("R", "G", "B", "A")  # nnU-Net v2's channel names for a natural image's colours (Dataset120)
COLOUR_ENDING = ".tif"  # the file ending of a colour dataset's images and labels (nnU-Net: one per dataset)


def model_channels(info: dict | None, near: str | Path | None = None) -> tuple[int | None, str]:
    """The input channels of the model that made a mask, and its name: ``info`` is the model saved with the mask
    (``model`` / ``weights_sha256`` / ``checkpoint``, or a napari layer's provenance with ``checkpoint_sha256``).
    Its checkpoint is looked for as recorded, beside the mask (``near``: the mask file; attnseg predict records the
    path it was given) and by name; a card whose weights are not the recorded ones is not taken. ``(None, name)``
    when no such model is found."""
    from ..checkpoint import read_card, resolve_model_path
    from ..errors import AttnSegError
    from .volume import model_info_of

    found = model_info_of(info)
    if not found:
        return None, ""
    name = str(found.get("model") or found.get("checkpoint") or "")
    tries = []
    if found.get("checkpoint"):
        tries.append(str(found["checkpoint"]))
        if near is not None and not Path(found["checkpoint"]).is_absolute():
            tries += [str(Path(near).parent / found["checkpoint"]), str(Path(near).parent.parent / found["checkpoint"])]
    if found.get("model"):
        tries.append(str(found["model"]))
    for source in tries:
        try:
            card = read_card(resolve_model_path(source))
        except (AttnSegError, OSError, ValueError):
            continue
        if found.get("weights_sha256") and card.weights_sha256 and card.weights_sha256 != found["weights_sha256"]:
            continue
        return int(card.in_channels), name
    return None, name


def is_picture(image: Volume, label_ndim: int) -> bool:
    """``image`` is an RGB(A) picture (its colour samples an axis, ``S``) of the mask's ``label_ndim`` dimensions."""
    axes = str(image.meta.get("axes") or "")
    return "S" in axes and len(axes) == np.ndim(image.data) == label_ndim + 1 and np.shape(image.data)[axes.index("S")] in (3, 4)


def picture_for_export(image: Volume, label_ndim: int, src: str, keep: bool | None = None,
                       info: dict[str, Any] | None = None, near: str | Path | None = None,
                       why: str = "as --keep-colour asks", into_colour: bool = False,
                       ) -> tuple[Volume, np.ndarray | None, str | None]:
    """``(grid, colours, note)`` for exporting ``image`` with a mask of ``label_ndim`` dimensions. Not an RGB(A)
    picture: ``(image, None, None)``. A picture: its colours ``(*spatial, 3|4)`` kept when ``keep`` is True, or when
    ``keep`` is None and the model that made the mask (``info``, ``near``: :func:`model_channels`) reads 3 or 4
    channels, with ``grid`` a (*spatial) plane of it for the grid checks; otherwise ``colours`` is None and ``grid`` the
    grey image predict and the napari panels segment of it (its grey, its one colour, or a bright-field stain's
    hematoxylin; :func:`~napari_attnseg.cohort.inputs.grey_of_colour`). ``note`` says which, naming ``src`` (and
    ``why`` colours kept with ``keep`` True). The model is looked up unless ``keep`` is False: a model of 4 channels
    gets back the opaque alpha the picture's reader dropped, ``--keep-colour`` or not. ``into_colour``: the dataset
    holds colour pictures, so a picture's colours go in when ``keep`` is None (its grey would be refused there)."""
    if not is_picture(image, label_ndim):
        if keep:
            raise InputError(f"{src} is not an RGB picture with colours of the mask's plane (axes "
                             f"{image.meta.get('axes') or '?'}, shape {np.shape(image.data)}); --keep-colour keeps an RGB "
                             "picture's colours: leave it out.")
        return image, None, None
    if keep is None and into_colour:
        keep, why = True, "as the dataset holds colour pictures"
    axes = str(image.meta["axes"])
    ax = axes.index("S")
    spacing = tuple(s for i, s in enumerate(image.spacing) if i != ax) if len(image.spacing) == len(axes) else image.spacing
    meta = {**image.meta, "axes": axes.replace("S", "")}
    channels, name = (None, "") if keep is False else model_channels(info, near)
    if keep or channels in (3, 4):
        if label_ndim != 2:
            raise InputError(f"{src} is a stack of RGB pictures ({label_ndim}D with colours); a dataset keeps the colours "
                             "of 2D pictures only: export its grey (attnseg export --grey; napari: Split RGB) or each "
                             "picture on its own.")
        from .alpha import dropped_alpha, with_alpha

        colours = np.moveaxis(np.asarray(image.data), ax, -1)
        if channels == 4 and colours.shape[-1] == 3 and (value := dropped_alpha(image.meta)) is not None:
            colours = with_alpha(colours, value)  # (the opaque alpha its reader dropped: the model reads RGBA)
        why = (f"the model that made the mask ({name}) reads {channels} channels (colour); --grey writes its grey "
               "instead" if keep is None else why)
        note = (f"{src}: its colours ({', '.join(COLOUR_CHANNELS[:colours.shape[-1]])}) go into the dataset as one "
                f"RGB picture, {why}.")
        return Volume(colours[..., 0], spacing, image.affine, meta), colours, note
    from ..cohort.inputs import grey_of_colour

    found = grey_of_colour(image.data, ax)
    if found is None:
        lost = (f" (the model saved with the mask, {name}, was not found to tell whether it reads colours: if it does, "
                "pass --keep-colour)" if keep is None and name and channels is None else "")
        raise InputError(f"{src} is an RGB picture whose colours hold different images on a dark background; a "
                         f"one-channel model reads one grey image{lost}. Save the colour that shows the objects as a grey "
                         "image (e.g. napari: right-click > Split RGB, then File > Save Selected Layer) and export that, "
                         "or keep its colours for a model that reads them (attnseg export --keep-colour).")
    grey, _, note = found
    if keep is None and name and channels is None:
        note = (f"{note.rstrip('.')} (the model saved with the mask, {name}, was not found to tell whether it reads "
                "colours: if it does, pass --keep-colour).")
    return Volume(grey, spacing, image.affine, meta), None, f"{src}: {note}"


def colour_layer_channels(info: dict[str, Any] | None, label_ndim: int, shape: tuple[int, ...],
                          near: str | Path | None = None, keep: int = 0) -> int | None:
    """napari's Correct tab: the channels (3 or 4) of the model that made a 2D mask whose provenance is ``info`` (the
    mask layer's ``metadata['attnseg']``) when it reads colours and the RGB image layer's data has ``shape``
    (Y, X, 3|4): its colours are exported (:func:`colour_layer_export`); None: its grey, as for any other mask. Reads
    the model's card only, on the GUI thread; the picture is read on the export's worker. ``near``: the mask's file
    (its model looked for beside it, as ``attnseg export`` does); ``keep``: the dataset holds colour pictures, so any
    mask's picture goes in with its colours (its grey would be refused there)."""
    channels, _ = model_channels(info, near)
    if label_ndim != 2 or len(shape) != 3 or shape[-1] not in (3, 4):
        return None
    if channels not in (3, 4):  # (keep: the colour dataset's channels; an opaque alpha is dropped for one of 3)
        return (keep if keep in (3, 4) else shape[-1]) if keep else None
    return channels


def colour_layer_export(picture: np.ndarray, info: dict[str, Any] | None, label_ndim: int,
                        name: str, channels: int | None = None) -> np.ndarray | None:
    """napari's Correct tab: the colours ``(Y, X, 3|4)`` of an RGB image layer's data ``picture`` to export with a 2D
    mask whose provenance is ``info`` when the model that made it reads colours (``channels``, else
    :func:`colour_layer_channels`), as :func:`picture_for_export` decides for ``attnseg export`` (an opaque alpha
    dropped for a model of 3, kept for one of 4, as the Segment tab gave them); None: export its grey. An RGBA picture
    for a model of 4 is exported as it is (its alpha dropped and put back had made two copies of a slide)."""
    from .alpha import drop_flat_alpha

    channels = channels or colour_layer_channels(info, label_ndim, tuple(np.shape(picture)))
    if channels not in (3, 4):
        return None
    if channels == 4 and np.shape(picture)[-1] == 4:
        return np.asarray(picture)
    meta: dict[str, Any] = {"axes": "YXS"}
    data, _ = drop_flat_alpha(np.asarray(picture), name, meta)  # (as the Segment tab and the picture's reader)
    return picture_for_export(Volume(data, (1.0, 1.0, 1.0), None, meta), label_ndim, name, True, info,
                              why="as the model that made the mask reads them, or the dataset holds colour pictures")[1]


def check_same_kind(manifest: dict | None, colour: bool, folder: Path, n_channels: int) -> None:
    """A dataset holds grey (or channel) images or RGB pictures' colours, never both: refused, saying what to do."""
    if manifest is None or not manifest.get("cases") or bool(manifest.get("colour")) == colour:
        return
    if colour:
        raise DatasetError(
            f"The dataset in {folder} holds grey images (channels {', '.join(manifest.get('channel_names') or [])}); "
            f"this export keeps an RGB picture's {n_channels} colours (its mask was made by a model that reads colour, "
            "or --keep-colour). A dataset holds one kind: export into another folder to fine-tune that colour model, "
            "or add the picture's grey here (attnseg export --grey) to fine-tune a one-channel model.")
    raise DatasetError(
        f"The dataset in {folder} holds RGB pictures' colours ({', '.join(manifest.get('channel_names') or [])}); this "
        "export writes one grey image. A dataset holds one kind: keep this picture's colours too (attnseg export "
        "--keep-colour), or export into another folder.")


def write_picture(path: Path, data: np.ndarray, spacing, unit=None) -> None:
    """A (Y, X, 3|4) RGB(A) TIFF (photometric RGB, zlib), with the pixel size as its resolution and, with a
    ``unit``, ImageJ's, as napari-attnseg's TIFF reader and Fiji read them; at ``path`` (a staged name)."""
    import tifffile

    data = np.asarray(data)
    if data.dtype.kind == "f" and data.dtype != np.float32:
        data = data.astype(np.float32)
    elif data.dtype.kind in "ib" or data.dtype.itemsize > 2:
        data = np.clip(data, 0, 65535).astype(np.uint16 if data.max(initial=0) > 255 else np.uint8)
    sy, sx = (float(s) for s in (list(spacing or (1.0, 1.0))[-2:]))
    if unit is not None and not isinstance(unit, str):  # (a napari layer's units, one per axis)
        unit = next((str(u) for u in reversed(list(unit)) if str(u) not in ("pixel", "")), None)
    meta: dict[str, Any] = {"axes": "YXS", **({"unit": str(unit)} if unit else {})}
    tifffile.imwrite(path, data, photometric="rgb", compression="zlib", resolution=(1.0 / sx, 1.0 / sy),
                     resolutionunit=1, metadata=meta, extrasamples=[2] if data.shape[-1] == 4 else None)
