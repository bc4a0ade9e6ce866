"""The alpha sample of an RGBA picture (a PNG with alpha, an RGBA TIFF), and masks saved as pictures.

Most RGBA pictures are opaque: a screenshot, a napari or Fiji export, a camera's PNG. Their alpha is a constant
that carries nothing, yet it made them 4-channel images: a model reading colours (3 channels) refused them and a
model trained on them read 4. The readers drop such an alpha with a note naming the file (:func:`drop_flat_alpha`),
which records the value dropped; a model of 4 channels (trained on such pictures before) gets it back (:func:`with_alpha`).

An alpha that varies is kept: the grey image of a bright-field slide (``stains.py``) leaves its transparent pixels
out (outside the tissue of an exported region). A model reading colours is refused such a picture
(:func:`transparency_message`): the colours under transparent pixels are whatever the tool that wrote them left
there, and what to put instead depends on the images: ImageJ drops the alpha and keeps those colours, scikit-image
composites onto white, OpenSlide and QuPath onto the slide's white, napari shows black. A bright-field slide
belongs on white, a fluorescence image on black, and one wrong guess changes what the model sees; so the user picks.

A mask saved as a picture holds its class ids in a palette PNG's indices (PASCAL VOC style: the palette only colours
them), or in the grey of an RGB picture whose colours are equal; both were read as colours and refused as "not on
the image's grid" (:func:`mask_of_picture`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .volume import Volume


def flat_alpha(data: np.ndarray) -> bool:
    """Whether an (..., 4) RGBA array's alpha is one value throughout (opaque, or carrying nothing); compared a few
    million pixels at a time (a memory-mapped slide stays mapped)."""
    alpha = data[..., 3]
    if alpha.size == 0:
        return True
    first = np.asarray(alpha[(0,) * alpha.ndim])
    rows = alpha.reshape(-1, alpha.shape[-1]) if alpha.ndim > 1 else alpha[None]
    step = max(1, 2**22 // max(1, rows.shape[1]))
    return all(bool((np.asarray(rows[i:i + step]) == first).all()) for i in range(0, rows.shape[0], step))


FLAT_ALPHA = "flat_alpha"  # meta key: the value of the constant alpha a reader dropped (:func:`dropped_alpha`)


class AlphaNote(str):
    """The note of a dropped alpha (:func:`drop_flat_alpha`), carrying the alpha's value (``.alpha``): the readers
    keep the note in ``meta["note"]``, so what was dropped is recorded on the volume's meta where it is dropped."""

    alpha: float


def drop_flat_alpha(data: np.ndarray, name: str, meta: dict | None = None) -> tuple[np.ndarray, str | None]:
    """An (..., 4) picture without its alpha when the alpha is one value throughout, and the note that says so (an
    :class:`AlphaNote`: the value dropped is its ``.alpha``, and ``meta[FLAT_ALPHA]`` when ``meta`` is given);
    otherwise ``data`` unchanged and None. ``name`` names the file in the note."""
    if np.ndim(data) < 3 or np.shape(data)[-1] != 4 or not flat_alpha(data):
        return data, None
    value = np.asarray(data[(0,) * (np.ndim(data) - 1) + (3,)]) if np.size(data) else 0
    top = np.iinfo(data.dtype).max if np.dtype(data.dtype).kind in "ui" else 1.0
    what = "fully opaque" if value >= top else f"one value ({value}) throughout"
    rgb = data[..., :3] if isinstance(data, np.memmap) else np.ascontiguousarray(data[..., :3])  # (a map: a view)
    note = AlphaNote(f"the alpha channel of {Path(name).name} is {what}, so it carries no transparency; read as RGB "
                     "(alpha dropped).")
    note.alpha = float(value)
    if meta is not None:
        meta[FLAT_ALPHA] = note.alpha
    return rgb, note


def dropped_alpha(meta: dict) -> float | None:
    """The value of the constant alpha the reader dropped from the picture ``meta`` describes (:func:`drop_flat_alpha`),
    or None. A model trained on opaque RGBA pictures before the readers dropped it reads 4 channels: the plane is put
    back for it (:func:`with_alpha`)."""
    if isinstance(meta.get(FLAT_ALPHA), (int, float)):
        return float(meta[FLAT_ALPHA])
    found = getattr(meta.get("note"), "alpha", None)
    return float(found) if isinstance(found, (int, float)) else None


def with_alpha(rgb: np.ndarray, value: float, ax: int = -1) -> np.ndarray:
    """``rgb`` (3 samples along ``ax``) with its constant alpha ``value`` put back as a 4th sample, in its dtype."""
    rgb = np.asarray(rgb)
    shape = list(rgb.shape)
    shape[ax] = 1
    return np.concatenate([rgb, np.full(shape, value, dtype=rgb.dtype)], axis=ax)


def alpha_back_note(name: str, value: float) -> str:
    """What :func:`with_alpha` did, for the run's note (it replaces the reader's "alpha dropped")."""
    return (f"the alpha channel of {Path(name).name} is one value ({value:g}) throughout; the model reads 4 channels "
            "(RGBA, as it was trained), so it is given the colours and that alpha")


def transparency_message(name: str, data: np.ndarray, ax: int = -1) -> str:
    """Why an RGBA picture with real transparency is refused by a model that reads colours, and what to do."""
    alpha = np.moveaxis(np.asarray(data), ax, -1)[..., 3]
    top = np.iinfo(alpha.dtype).max if alpha.dtype.kind in "ui" else 1.0
    share = float(np.count_nonzero(alpha < top)) / max(1, alpha.size)
    return (f"{name} is an RGBA picture with transparent pixels ({share:.0%} of them are not fully opaque), and the "
            "model reads 3 colours (RGB). What lies under transparent pixels depends on the tool that wrote the "
            "file, so napari-attnseg does not guess: flatten the picture onto the background your images have and "
            "save it as RGB (Fiji: Image > Type > RGB Color; GIMP: Image > Flatten Image; Python: "
            "skimage.color.rgba2rgb(img, background=(1, 1, 1)) for a bright-field slide, (0, 0, 0) for "
            "fluorescence), then run again.")


def palette_indices(path) -> np.ndarray | None:
    """The palette indices of a palette (P mode) PNG, (y, x) uint8: what a mask saved so holds (its values are the
    class ids; the palette only colours them). None for any other file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode != "P" or getattr(im, "n_frames", 1) != 1:
                return None
            return np.asarray(im, dtype=np.uint8).copy()
    except Exception:  # noqa: BLE001 - not a picture PIL reads: the ordinary reader says why
        return None


def mask_of_picture(vol: Volume) -> tuple[Volume, str | None]:
    """A mask as its class ids, and a note when it was read from a grey mask saved as colour: a palette PNG's indices,
    an RGB(A) picture's grey when its red, green and blue are equal everywhere; any other ``vol`` unchanged."""
    path = str(vol.meta.get("source_path") or "")
    axes = str(vol.meta.get("axes") or "")
    if path.lower().endswith(".png") and (found := palette_indices(path)) is not None:
        return Volume(found, tuple(vol.spacing[:2]), vol.affine, {**vol.meta, "axes": "YX"}), None
    if not (axes.endswith("S") and len(axes) == np.ndim(vol.data) and np.shape(vol.data)[-1] in (3, 4)):
        return vol, None
    rgb = np.asarray(vol.data)[..., :3]
    if not (rgb == rgb[..., :1]).all():
        return vol, None
    spacing = tuple(vol.spacing[:-1]) if len(vol.spacing) == len(axes) else tuple(vol.spacing)
    note = "a grey mask saved as colour (red, green and blue equal everywhere): its grey values are the labels"
    return Volume(np.ascontiguousarray(rgb[..., 0]), spacing, vol.affine, {**vol.meta, "axes": axes[:-1]}), note
