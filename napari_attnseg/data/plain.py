"""PNG, JPEG and BMP: 2D grey or colour pictures, read with scikit-image (``skimage.io.imread``).

A picture is read as (y, x), or (y, x, samples) with axes ``YXS`` for colour (RGB, RGBA: the channel
choice is :func:`napari_attnseg.cohort.inputs.pick_channel`'s, as for an RGB TIFF). Grey with alpha is
read as grey, RGBA whose alpha is one value throughout (opaque) as RGB with ``meta["note"]`` saying so
(``alpha.py``), a palette image as RGB (a palette mask's indices: :func:`~.alpha.palette_indices`), a 1-bit one
as 0/1 uint8; a CMYK JPEG is refused. A 16-bit PNG with colour or alpha is read at 8 bits per sample (Pillow's
limit), with ``meta["warning"]`` saying so; a 16-bit grey one keeps its 16 bits. The spacing is one
pixel: the dpi such files carry is a print setting, not the pixel size (as for a TIFF, see ``tiff.py``).

What is segmented in one is written as TIFF (the format it is read as, ``meta["format"]``, is ``tiff``;
``meta["file_format"]`` is the file's own: png, jpeg, bmp), so mask and probabilities keep their values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .alpha import drop_flat_alpha
from .volume import Volume

PLAIN_SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp"}


def read_plain(p: Path) -> Volume:
    """Read a PNG, JPEG or BMP file. Raises ``InputError`` naming the file when it cannot be read."""
    from skimage.io import imread

    kind = PLAIN_SUFFIXES.get(p.suffix.lower(), p.suffix.lower().lstrip("."))
    try:
        data = np.asarray(imread(p))
    except Exception as exc:  # noqa: BLE001 - the errors for damaged or foreign files vary
        raise InputError(f"{p} is not a readable {kind.upper()} image ({exc}); check the file, or save it "
                         "again as PNG or TIFF.") from None
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.ndim == 3 and data.shape[-1] == 2:  # grey + alpha: the grey
        data = np.ascontiguousarray(data[..., 0])
    if kind == "jpeg" and data.ndim == 3 and data.shape[-1] == 4:  # JPEG has no alpha: 4 samples are CMYK
        raise InputError(f"{p} is a CMYK JPEG; save it as an RGB or grey image (PNG, TIFF) first.")
    data, note = drop_flat_alpha(data, str(p))  # an opaque RGBA: 3 colours (a model reading RGB refused 4)
    if data.ndim == 2:
        axes = "YX"
    elif data.ndim == 3 and data.shape[-1] in (3, 4):
        axes = "YXS"
    else:
        raise InputError(f"{p}: a {kind.upper()} of shape {data.shape} (several frames?); napari-attnseg "
                         "reads one 2D grey or colour picture per file.")
    meta = {"source_path": str(p), "format": "tiff", "file_format": kind, "axes": axes,
            **({"note": note} if note else {})}
    if kind == "png" and data.dtype == np.uint8 and _png_depth(p) == (16, True):  # Pillow reads 8 bits of them
        meta["warning"] = (f"{p.name} is a 16-bit PNG with colour or alpha, read at 8 bits per sample (its reader, "
                           "Pillow, keeps no more): fine shades are merged. Save it as a 16-bit TIFF to keep its "
                           "full range.")
    return Volume(data, (1.0,) * data.ndim, None, meta)


def _png_depth(p: Path) -> tuple[int, bool]:
    """A PNG's bit depth and whether it holds colour (or grey with alpha), from its header; (0, False) if unreadable."""
    try:
        with open(p, "rb") as f:
            head = f.read(26)
    except OSError:
        return 0, False
    if len(head) < 26 or not head.startswith(b"\x89PNG\r\n\x1a\n"):
        return 0, False
    return head[24], head[25] in (2, 4, 6)  # colour types: RGB, grey + alpha, RGBA
