"""TIFF with tifffile: spacing from the ImageJ / resolution tags, memory-mapped when the file allows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write
from .volume import Volume

# Below this size the file is simply read; above it an uncompressed, contiguous file is mapped.
MEMMAP_MIN_BYTES = 16 * 2**20


INCH = 2  # TIFF ResolutionUnit; also the TIFF default when the tag is absent


def _spacing(tif, ndim: int) -> list[float]:
    """Pixel spacing from the resolution tags (units per pixel), the z spacing from ImageJ / tifffile
    metadata. A resolution in dots per inch with neither ImageJ metadata nor this package's own
    (``axes`` in tifffile's JSON description) is a print setting (72, 96, 300 dpi written by an image
    editor or a camera), not the pixel size: it is ignored and the spacing stays 1 pixel, as when a
    TIFF has no resolution (taken at face value it made the nuclei model shrink the image 72x)."""
    spacing = [1.0] * ndim
    page = tif.pages[0]
    ij = tif.imagej_metadata or {}
    shaped = (tif.shaped_metadata or [{}])[0] or {}
    unit_tag = page.tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag is not None else INCH
    physical = bool(ij) or "axes" in shaped or unit != INCH
    try:
        xres = page.tags["XResolution"].value
        yres = page.tags["YResolution"].value
        if physical and xres[0] and yres[0] and ndim >= 2:
            spacing[-1] = xres[1] / xres[0]
            spacing[-2] = yres[1] / yres[0]
    except KeyError:
        pass
    z_spacing = ij.get("spacing") or shaped.get("spacing")
    if ndim >= 3 and z_spacing:
        spacing[-3] = float(z_spacing)
    return spacing


def read_tiff(p: Path):
    import tifffile

    with tifffile.TiffFile(str(p)) as tif:
        series = tif.series[0]
        shape, dtype = tuple(series.shape), np.dtype(series.dtype)
        axes = str(series.axes)  # tifffile's: Y, X, Z, C (channels), S (samples: RGB), T, Q (unknown)...
        spacing = _spacing(tif, len(shape))
        shaped = (tif.shaped_metadata or [{}])[0] or {}
        mappable = int(np.prod(shape)) * dtype.itemsize >= MEMMAP_MIN_BYTES and series.dataoffset is not None
        data = None if mappable else tif.asarray()
    if data is None:
        # copy-on-write: a caller may paint into the array without ever touching the file
        data = tifffile.memmap(str(p), mode="c")
    meta = {"source_path": str(p), "format": "tiff", "memory_mapped": isinstance(data, np.memmap), "axes": axes}
    if isinstance(shaped.get("reviewed_slices"), list):  # a mask saved with its reviewed slices
        meta["reviewed_slices"] = sorted({int(z) for z in shaped["reviewed_slices"]})
    return Volume(data, tuple(float(s) for s in spacing), None, meta)


def write_tiff(p: Path, data: np.ndarray, spacing, reviewed_slices: list[int] | None = None) -> None:
    import tifffile

    sp = list(spacing or (1.0,) * data.ndim)
    if data.dtype in (np.float64, np.int64, np.uint64, np.bool_):
        data = data.astype({"f": np.float32, "i": np.int32, "u": np.uint32, "b": np.uint8}[data.dtype.kind])
    kwargs: dict[str, Any] = {}
    if data.ndim >= 2:
        kwargs["resolution"] = (1.0 / float(sp[-1]), 1.0 / float(sp[-2]))
        kwargs["resolutionunit"] = 1  # NONE: units per pixel as the spacing says (not dots per inch)
    metadata: dict[str, Any] | None = {"axes": "ZYX"[-data.ndim:]} if data.ndim <= 3 else None
    if data.ndim == 3:
        metadata["spacing"] = float(sp[-3])
    if reviewed_slices is not None and metadata is not None:  # in tifffile's JSON description
        metadata["reviewed_slices"] = sorted({int(z) for z in reviewed_slices})
    atomic_write(p, lambda tmp: tifffile.imwrite(tmp, data, metadata=metadata, compression="zlib",
                                                 photometric="minisblack", **kwargs))
