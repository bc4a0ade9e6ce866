"""Bright-field colour images (H&E, IHC): the nuclear stain as a grey image.

A fluorescence nuclei model (``nuclei-2d``) learnt bright nuclei on a dark background. A pathologist's H&E or
hematoxylin-DAB slide is an RGB picture of dark purple nuclei on a bright background, and none of its three
colours is that image: the red channel shows the nuclei dark, and in DAB-stained tissue the brown membranes
darker still. Colour deconvolution (Ruifrok & Johnston, Anal. Quant. Cytol. Histol. 2001) turns each pixel's
optical density, ``-log10(I / I0)`` with ``I0`` the white of the slide, into the amounts of three stains; the
hematoxylin amount is the nuclear stain, bright on dark, as the model expects. The stain vectors are
scikit-image's ``hed_from_rgb`` (H&E-DAB). Every reader of colour images (``attnseg predict``, ``attnseg
export``, the napari panels) goes through :func:`~napari_attnseg.cohort.inputs.grey_of_colour`, which calls
:func:`stain_grey`, so a prediction, its export and the fine-tuning on it all see the same grey image.
"""

from __future__ import annotations

import numpy as np

BRIGHT = 0.5  # median brightness (share of the white level) above which an RGB picture is bright-field
LIGHT = 0.15  # median darkest colour above which the stains absorb (fluorescence glows on black, in 1-2 colours)
# A crop inside the tissue (no glass: a dense tumour, a DAB-rich region) is darker than BRIGHT, yet stained light:
DARK, DARK_SHARE = 0.25, 0.02  # fewer than DARK_SHARE of its pixels have all colours below DARK of the white
TOGETHER = 0.3  # least correlation between two colours over the pixels of a slide
NO_SLIDE = 0.02  # every colour below this share of the white: the opaque black a slide scanner puts outside the scan
_BLOCK = 2**22  # pixels converted at a time (float32 optical densities of a few million pixels)


SAME = 0.04  # colours within this share of the white level of each other, or of a constant: JPEG's colour noise


def grey_sample(data, ax: int = -1) -> tuple[int, str] | None:
    """Which colour sample of an RGB(A) picture (samples along ``ax``) holds its grey image, and a note saying
    why, or None when the colours carry different images. Red, green and blue equal everywhere: a grey image
    saved as RGB (sample 0). One of them varying and the other two constant: a single stain saved in its
    colour (DAPI nuclei in blue, a GFP channel in green: that sample). "Equal" and "constant" are within
    ``SAME`` of the white level (255 for 8 bits, else the brightest value): a JPEG leaves the dark colours of
    a DAPI-in-blue picture at 0-8, not 0, and was refused. Alpha is left out. Compared a few million pixels at
    a time (a memory-mapped file stays so)."""
    planes = np.moveaxis(np.asarray(data), ax, 0)
    if planes.shape[0] not in (3, 4):
        return None
    step = max(1, _BLOCK // max(1, int(np.prod(planes.shape[2:]))))
    lo, hi, apart = np.full(3, np.inf), np.full(3, -np.inf), 0.0  # each colour's range; most red/green/blue differ
    for i in range(0, planes.shape[1], step):
        rgb = np.asarray(planes[:3, i:i + step], dtype=np.float32).reshape(3, -1)
        lo, hi = np.minimum(lo, rgb.min(1)), np.maximum(hi, rgb.max(1))
        apart = max(apart, float(np.abs(rgb[1:] - rgb[0]).max()))
    tol = SAME * (255.0 if planes.dtype == np.uint8 else max(float(hi.max()), 1e-12))
    flat = [bool(r <= tol) for r in hi - lo]
    alpha = ", alpha ignored" if planes.shape[0] == 4 else ""
    if apart <= tol:
        return 0, f"red, green and blue are identical (a grey image saved as RGB{alpha}); segmented as grey."
    if sum(flat) == 2:
        k = flat.index(False)
        name = ("red", "green", "blue")[k]
        return k, (f"only {name} varies, the other colours are constant (one stain saved as RGB{alpha}); "
                   f"its {name} channel was segmented as grey.")
    return None  # every colour constant (no image in it), or colours carrying different images


def _white_level(sample: np.ndarray, dtype: np.dtype) -> float:
    """The slide's white (``I0``): 255 for 8-bit pictures, else the 99.9th percentile of the brightest colour."""
    if dtype == np.uint8:
        return 255.0
    top = float(np.percentile(sample.max(axis=-1), 99.9)) if sample.size else 0.0
    return top if top > 0 else 1.0


def _sample(rgb: np.ndarray, n: int = 2**20) -> np.ndarray:
    """About ``n`` pixels' colours (samples last), taken on a regular grid of the leading axes, less the pixels an
    alpha sample makes transparent (outside the tissue of an exported region: no slide there)."""
    lead = rgb.shape[:-1]
    step = max(1, int(np.ceil((int(np.prod(lead)) / n) ** (1.0 / max(1, len(lead))))))
    s = np.asarray(rgb[tuple(slice(None, None, step) for _ in lead)], np.float32).reshape(-1, rgb.shape[-1])
    return (s[s[:, 3] > 0] if s.shape[1] == 4 else s)[:, :3]


def is_brightfield(rgb: np.ndarray, ax: int = -1) -> bool:
    """True for a bright-field colour picture: three or four colour samples along ``ax``, stains that absorb (the
    median of each pixel's darkest colour above :data:`LIGHT` of the white level; colours that vary together,
    correlated at least :data:`TOGETHER`: random colours are no slide), and a median brightness (mean
    of red, green and blue) above :data:`BRIGHT` of it or, for a crop filled with tissue (median brightness 0.45
    in a DAB-rich region of scikit-image's IHC slide, which was refused as fluorescence), hardly a pixel dark in
    every colour (:data:`DARK`). A fluorescence composite (stains glowing on black, in one or two colours: black
    in some colour almost everywhere) stays a choice of channel, however bright or dense its cells."""
    planes = np.moveaxis(np.asarray(rgb) if not hasattr(rgb, "shape") else rgb, ax, -1)
    if planes.ndim < 3 or planes.shape[-1] not in (3, 4):
        return False
    s = _sample(planes)
    s = s[np.isfinite(s).all(axis=1)]
    if s.size == 0:
        return False
    white = _white_level(s, np.dtype(planes.dtype))
    if float(np.median(s.min(axis=1))) <= LIGHT * white:  # black in some colour: glowing stains, not absorbing ones
        return False
    with np.errstate(invalid="ignore", divide="ignore"):  # stains absorb in every colour: a slide's colours vary
        c = np.corrcoef(s.T)[np.triu_indices(3, 1)]    # together (IHC >= 0.82, an H&E 64-px crop 0.58; noise 0)
    if not np.all(np.isfinite(c)) or float(c.min()) < TOGETHER:
        return False
    return (float(np.median(s.mean(axis=1))) > BRIGHT * white
            or float((s.max(axis=1) < DARK * white).mean()) < DARK_SHARE)


def hematoxylin(rgb: np.ndarray, ax: int = -1) -> np.ndarray:
    """The hematoxylin optical density of a bright-field colour picture (samples along ``ax``): float32, 0 where
    there is no stain (and where an alpha sample makes the picture transparent, or every colour is black, below
    :data:`NO_SLIDE`: no slide there, not the densest stain), about 0.3-1 on nuclei. Converted a few million
    pixels at a time (8- and 16-bit pictures by a table of each value's density), so a big or memory-mapped
    picture costs one float32 plane of output."""
    from skimage.color import hed_from_rgb

    planes = np.moveaxis(rgb, ax, -1)
    white = _white_level(_sample(planes), np.dtype(planes.dtype))
    vector = np.asarray(hed_from_rgb, np.float64)[:, 0].astype(np.float32)  # optical densities -> hematoxylin
    table = None
    if planes.dtype in (np.uint8, np.uint16):  # one density per stored value: 3 look-ups a pixel, no logarithms
        values = np.arange(np.iinfo(planes.dtype).max + 1, dtype=np.float64) / white
        table = (-np.log10(np.clip(values, 1e-6, 1.0)))[None, :] * vector[:, None].astype(np.float64)
        table = table.astype(np.float32)  # (3, levels): colour c's value v adds table[c, v]
    out = np.empty(planes.shape[:-1], np.float32)
    rows = max(1, _BLOCK // max(1, int(np.prod(planes.shape[1:-1]))))
    for i in range(0, planes.shape[0], rows):
        part = np.asarray(planes[i:i + rows, ..., :3])
        dest = out[i:i + rows]
        if table is not None:
            np.add(table[0][part[..., 0]], table[1][part[..., 1]], out=dest)
            dest += table[2][part[..., 2]]
            black = np.maximum(np.maximum(part[..., 0], part[..., 1]), part[..., 2]) <= NO_SLIDE * white
        else:
            block = part.astype(np.float32) / np.float32(white)
            np.clip(block, 1e-6, 1.0, out=block)
            np.matmul(-np.log10(block), vector, out=dest)
            black = np.maximum(np.maximum(block[..., 0], block[..., 1]), block[..., 2]) <= NO_SLIDE
        np.maximum(dest, 0.0, out=dest)
        dest[black] = 0.0  # black in every colour: outside the scan, not stain
        if planes.shape[-1] == 4:
            dest[np.asarray(planes[i:i + rows, ..., 3]) <= 0] = 0.0
    return out


def stain_grey(rgb: np.ndarray, ax: int = -1) -> tuple[np.ndarray, str] | None:
    """The grey image to segment of a bright-field colour picture (its hematoxylin, :func:`hematoxylin`) and a
    note saying so, or None when the picture is not bright-field (:func:`is_brightfield`)."""
    if not is_brightfield(rgb, ax):
        return None
    return hematoxylin(rgb, ax), ("a bright-field colour picture (H&E, IHC): its hematoxylin (the nuclear stain, "
                                  "bright on dark, by colour deconvolution) is what is segmented")
