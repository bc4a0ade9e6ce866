"""TIFF with tifffile: spacing from the OME pixel sizes, the ImageJ / resolution tags; memory-mapped
when the file allows. A mask written ``like`` an ImageJ TIFF, or with a known length unit (given, or the
source's: µm of OME sizes, mm of NIfTI / DICOM), is an ImageJ TIFF (resolution, unit, z spacing and axes
as Fiji reads them); otherwise tifffile's JSON description carries axes, z spacing (and the unit where
ImageJ cannot hold the values). ``Volume.meta["unit"]`` is the length unit of the spacing read."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write
from .alpha import drop_flat_alpha
from .tiff_meta import (
    CENTIMETER,
    IMAGEJ_AXES,
    IMAGEJ_DTYPES,
    IMAGEJ_KEYS,
    INCH,
    _ascii,
    _ome_channels,
    _ome_sizes,
    _source_unit,
    _unescape,
    _unit_entries,
    script_stack_axes,
    series_label,
    series_note,
    shaped_of,
    tiff_unit,
)
from .volume import Volume, model_info_of

# Below this size the file is simply read; above it an uncompressed, contiguous file is mapped.
MEMMAP_MIN_BYTES = 16 * 2**20


def _axis(axes: str, letter: str, fallback: int, ndim: int) -> int | None:
    """Index of ``letter`` in ``axes`` (tifffile's axes of the series), else ``fallback`` (negative)."""
    if len(axes) == ndim and letter in axes:
        return axes.index(letter)
    return fallback + ndim if ndim >= -fallback else None


def _spacing(tif, ndim: int, axes: str = "", series: int = 0) -> list[float]:
    """Pixel spacing in the series' axes: the OME pixel sizes (in µm) where the file has them, else
    the resolution tags (units per pixel) and the z spacing from ImageJ / tifffile metadata. A
    resolution in dots per inch with neither ImageJ metadata nor this package's own (``axes`` in
    tifffile's JSON description) is a print setting (72, 96, 300 dpi written by an image editor or a
    camera), not the pixel size: it is ignored and the spacing stays 1 pixel, as when a TIFF has no
    resolution (taken at face value it made the nuclei model shrink the image 72x)."""
    spacing = [1.0] * ndim
    page = tif.series[series].keyframe if series else tif.pages[0]  # (the length unit of these: _read_unit)
    ij, shaped = tif.imagej_metadata or {}, shaped_of(tif, series)
    physical = bool(ij) or "axes" in shaped or _resolution_unit(page) != INCH
    ix, iy, iz = _axis(axes, "X", -1, ndim), _axis(axes, "Y", -2, ndim), _axis(axes, "Z", -3, ndim)
    if iz is not None and len(axes) == ndim and axes[iz] == "T":
        iz = None  # a time-lapse (TYX): ImageJ's "spacing" (voxel depth) is no frame interval
    try:
        xres = page.tags["XResolution"].value
        yres = page.tags["YResolution"].value
        if physical and xres[0] and yres[0] and ix is not None and iy is not None:
            spacing[ix] = xres[1] / xres[0]
            spacing[iy] = yres[1] / yres[0]
    except KeyError:
        pass
    z_spacing = ij.get("spacing") or shaped.get("spacing")
    if iz is not None and z_spacing:
        spacing[iz] = float(z_spacing)
    for letter, size in _ome_sizes(tif, series).items():
        i = {"X": ix, "Y": iy, "Z": iz if "Z" in axes else None}[letter]
        if i is not None:
            spacing[i] = size
    return spacing


def _resolution_unit(page) -> int:
    tag = page.tags.get("ResolutionUnit")
    return int(tag.value) if tag is not None else INCH


def _read_unit(tif, series: int = 0) -> str | None:
    """The length unit of :func:`_spacing`: µm for OME sizes, else the ImageJ unit, else ours (JSON), else cm for a
    resolution in pixels per centimetre (the TIFF's ResolutionUnit; without it the spacing had no unit)."""
    if {"X", "Y"} & set(_ome_sizes(tif, series)):
        return "micron"
    ij, shaped = tif.imagej_metadata or {}, shaped_of(tif, series)
    for value in (ij.get("unit"), shaped.get("unit")):
        if isinstance(value, str) and tiff_unit(value):
            return tiff_unit(value)
    page = tif.series[series].keyframe if series else tif.pages[0]
    return "cm" if not ij and _resolution_unit(page) == CENTIMETER and "XResolution" in page.tags else None


def _reviewed(value) -> list[int] | None:
    """Reviewed slices from the JSON description (a list) or an ImageJ description entry ("3,4,12")."""
    if isinstance(value, list):
        return sorted({int(z) for z in value})
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return sorted({int(z) for z in re.findall(r"\d+", str(value))})
    return None


def read_tiff(p: Path, series_index: int = 0):
    """Image series ``series_index`` of a TIFF (a file of several series, e.g. stage positions: ``meta["warning"]``
    says which was read and how to get another)."""
    import tifffile

    with tifffile.TiffFile(str(p)) as tif:
        series = tif.series[series_index]
        shape, dtype = tuple(series.shape), np.dtype(series.dtype)
        axes = script_stack_axes(tif, series_index, str(series.axes))  # tifffile's: Y, X, Z, C (channels), S (samples:
        # RGB), T, Q (unknown)...; a script's (3, Y, X) stack, stored as RGB by tifffile's default: QYX
        spacing = _spacing(tif, len(shape), axes, series_index)
        unit, several = _read_unit(tif, series_index), series_note(tif, Path(p).name, series_index)
        shaped = shaped_of(tif, series_index)
        ij = tif.imagej_metadata or {}
        channels, names = _ome_channels(tif, series_index), _class_names(ij.get(NAMES_KEY) if ij else shaped.get(NAMES_KEY))
        mappable = int(np.prod(shape)) * dtype.itemsize >= MEMMAP_MIN_BYTES and series.dataoffset is not None
        data = None if mappable else tif.asarray(series=series_index)
    if data is None:
        # copy-on-write: a caller may paint into the array without ever touching the file
        data = tifffile.memmap(str(p), series=series_index, mode="c")
    if len(axes) == data.ndim >= 3 and axes[-1] == "Q" and data.shape[-1] == 1:  # (Y, X, 1): no axis, one plane
        data, axes, spacing = data[..., 0], axes[:-1], spacing[:-1]  # (a 2D model took its rows as 64 slices)
    data, axes, spacing, plane = _one_plane(data, axes, spacing)
    note = None
    if axes.endswith("S") and data.shape[-1] == 4:  # RGBA: an alpha of one value (opaque) is dropped, with a note
        data, note = drop_flat_alpha(data, str(p))
    meta = {"source_path": str(p), "format": "tiff", "memory_mapped": isinstance(data, np.memmap), "axes": axes,
            **({"note": note} if note else {}), **({"planar_rgb": True} if axes == "QYX" and series.axes == "SYX" else {})}
    if unit:  # the length unit of the spacing
        meta["unit"] = unit
    if several:  # (predict, export and a cohort print it with the result)
        meta["warning"] = several
    if channels and "C" in axes and len(channels) == shape[axes.index("C")]:
        meta["channel_names"] = channels  # the OME channel names (DAPI, GFP...), in the order of the C axis
    if ij:  # an ImageJ TIFF: its calibration entries, so that a mask written like it is one too
        meta["imagej"] = {k: _unescape(ij[k]) for k in IMAGEJ_KEYS
                          if isinstance(ij.get(k), (str, int, float)) and not isinstance(ij.get(k), bool)}
    reviewed = _reviewed(ij.get("reviewed_slices")) if ij else None
    if isinstance(shaped.get("reviewed_slices"), list):
        reviewed = _reviewed(shaped["reviewed_slices"])
    if plane and reviewed == [0]:  # its one plane reviewed: a 2D mask, reviewed as a whole
        reviewed = None
    if reviewed is not None:  # a mask saved with its reviewed slices
        meta["reviewed_slices"] = reviewed
    if (model := _model_note(ij.get(MODEL_KEY) if ij else shaped.get(MODEL_KEY))) is not None:
        meta["model_info"] = model  # the model that made the mask, saved with it
    if (ignore := _ignore_note(ij, shaped)) is not None:
        meta["ignore_value"] = ignore  # a reopened export's 'ignore' value (its unreviewed slices), saved with it
    if names:
        meta["class_names"] = names  # the mask's class names, saved with it (File > Save, Save mask...)
    return Volume(data, tuple(float(s) for s in spacing), None, meta)


def _one_plane(data, axes: str, spacing: list[float]) -> tuple[Any, str, list[float], bool]:
    """A stack of one plane ((1, Y, X): Fiji's or a script's single image, tifffile's axes QYX, ZYX, TYX) as the 2D
    image it is, its spacing the plane's; True when squeezed. (A (Y, X) mask of it was refused as off its grid, as was
    a (1, Y, X) mask of a (Y, X) image; ImageJ and OME files come squeezed from tifffile.)"""
    if len(axes) == data.ndim >= 3 and axes[0] in "QZTI" and data.shape[0] == 1 and axes[1:] in ("YX", "YXS"):
        return data[0], axes[1:], spacing[1:], True
    return data, axes, spacing, False


def tiff_layers(p: Path, name: str) -> list[tuple]:
    """A TIFF as napari reader layers (``(data, kwargs, "image")``) on its pixel size: the spacing in the layer's
    ``scale``, µm (OME nm / mm converted) in its ``units`` (``pixel`` for a time axis), its axes as axis labels
    (t, z, y, x). The channels (C axis) are one layer each, '<name> [DAPI]' by the OME channel names (``c0``...
    without): the models take one channel, and the layer's name says which one runs. RGB (YXS) is one RGB layer.
    A file of several image series (stage positions) gives each its layers, '<name> [pos2]' by the series' names."""
    import tifffile

    with tifffile.TiffFile(str(p)) as tif:
        labels = [series_label(s, k) for k, s in enumerate(tif.series)]
    if len(labels) > 1:  # (each series read alone, on its own pixel size; a pyramid's levels are one series)
        return [layer for k, label in enumerate(labels) for layer in _series_layers(p, f"{name} [{label}]", k)]
    return _series_layers(p, name, 0)


def _series_layers(p: Path, name: str, series: int) -> list[tuple]:
    volume = read_tiff(p, series)
    axes, data = str(volume.meta.get("axes", "")), volume.data
    if len(axes) != data.ndim:  # (tifffile always gives one letter per axis)
        axes = "ZYX"[-data.ndim:] if data.ndim <= 3 else "Q" * (data.ndim - 2) + "YX"
    rgb = axes.endswith("S") and data.shape[-1] in (3, 4)
    c = axes.index("C") if "C" in axes else None
    kept = [k for k, a in enumerate(axes) if k != c and not (rgb and k == data.ndim - 1)]
    meta = {"source_path": str(p), "format": "tiff", "spacing": [volume.spacing[k] for k in kept],
            "axes": "".join(axes[k] for k in kept), **({"series": series} if series else {})}
    kwargs: dict[str, Any] = {"scale": meta["spacing"], "axis_labels": tuple(a.lower() for a in meta["axes"]),
                              "rgb": rgb}
    unit = {"micron": "um"}.get(str(volume.meta.get("unit")), volume.meta.get("unit"))
    if unit:
        kwargs["units"] = tuple(unit if a in "ZYX" else "pixel" for a in meta["axes"])
    if c is None:
        return [(data, {**kwargs, "name": name, "metadata": meta}, "image")]
    names = volume.meta.get("channel_names") or [f"c{k}" for k in range(data.shape[c])]
    return [(data[(slice(None),) * c + (k,)], {**kwargs, "name": f"{name} [{names[k]}]",
             "metadata": {**meta, "channel": names[k], "channel_index": k}}, "image") for k in range(data.shape[c])]


def tiff_calibration(p) -> tuple[tuple[float, ...], str | None, str] | None:
    """The pixel spacing, length unit and axes (tifffile's: ZYX, TYX...) a TIFF records (read from its header,
    not its pixels), or None when it records none (every spacing 1) or cannot be read: what napari's own TIFF
    reader drops when it opens it."""
    import tifffile

    try:
        with tifffile.TiffFile(str(p)) as tif:
            series = tif.series[0]
            spacing = _spacing(tif, len(series.shape), str(series.axes))
            unit, axes = _read_unit(tif), str(series.axes)
    except Exception:  # (not a TIFF, unreadable: nothing to say)
        return None
    if all(abs(s - 1.0) < 1e-9 for s in spacing):
        return None
    return tuple(float(s) for s in spacing), unit, axes


def tiff_axes(p, series: int = 0) -> str | None:
    """The axes of image ``series`` of a TIFF as napari's layers hold them (tifffile's, channels and RGB samples left
    out: TYX, ZYX...), read from its header; None when unreadable or unknown (a plain stack: IYX, QYX)."""
    import tifffile

    try:
        with tifffile.TiffFile(str(p)) as tif:
            axes = str(tif.series[series].axes)
    except Exception:  # (not a TIFF, unreadable: nothing to say)
        return None
    axes = axes.replace("C", "").removesuffix("S")
    return axes if axes.endswith("YX") and set(axes) <= set("TZYX") else None


def mask_marks(p) -> dict | None:
    """What a mask this project wrote as TIFF carries besides its pixels (read from the header): its reviewed slices
    (``reviewed_slices``), the model that made it (``model_info``), its 'ignore' value (``ignore_value``) and its class
    names (``class_names``); None
    for another TIFF (or an unreadable one).
    napari's own TIFF reader drops both and opens the mask as an image."""
    import tifffile

    try:
        with tifffile.TiffFile(str(p)) as tif:
            ij, shaped = tif.imagej_metadata or {}, shaped_of(tif)
    except Exception:  # noqa: BLE001 - not a TIFF, unreadable: nothing to say
        return None
    reviewed = _reviewed(shaped["reviewed_slices"]) if isinstance(shaped.get("reviewed_slices"), list) else \
        (_reviewed(ij.get("reviewed_slices")) if ij else None)
    model = _model_note(ij.get(MODEL_KEY) if ij else shaped.get(MODEL_KEY))
    found = {k: v for k, v in (("reviewed_slices", reviewed), ("model_info", model),
                               ("ignore_value", _ignore_note(ij, shaped)),
                               ("class_names", _class_names(ij.get(NAMES_KEY) if ij else shaped.get(NAMES_KEY))))
             if v is not None}
    return found or None


MODEL_KEY = "attnseg_model"  # description entry (ImageJ or JSON): the model that made a mask, as JSON
IGNORE_KEY = "ignore_value"  # description entry: the 'ignore' value of a reopened export's unreviewed slices
NAMES_KEY = "class_names"  # description entry: a mask's class names (one per value from 0), as a JSON list


def _class_names(value) -> list[str] | None:
    try:
        names = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return None
    return [str(n) for n in names] if isinstance(names, list) and names else None


def _ignore_note(ij: dict, shaped: dict) -> int | None:
    value = ij.get(IGNORE_KEY) if ij else shaped.get(IGNORE_KEY)
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _model_note(value) -> dict | None:
    try:
        return model_info_of(json.loads(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def _origin_entries(origin, axes: str) -> dict[str, float]:
    """ImageJ ``xorigin`` / ``yorigin`` / ``zorigin`` (pixels; ImageJ's x = (pixel - xorigin) * pixel width) from
    one origin per array axis; zeros left out, as ImageJ does."""
    if origin is None or len(origin) != len(axes):
        return {}
    return {f"{a.lower()}origin": round(float(o), 9) for a, o in zip(axes, origin) if a in "XYZ" and abs(float(o)) > 1e-9}


def _imagej_data(data: np.ndarray) -> np.ndarray | None:
    """``data`` in a type ImageJ reads (uint8, uint16, float32), or None where that would change values."""
    if data.dtype in IMAGEJ_DTYPES:
        return data
    if data.dtype.kind == "b":
        return data.astype(np.uint8)
    if data.dtype.kind in "iu":
        lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
        return data.astype(np.uint16) if 0 <= lo and hi <= 65535 else None
    if data.dtype.kind == "f" and data.dtype.itemsize < 4:
        return data.astype(np.float32)
    return None


def _imagej_axes(axes: str | None, ndim: int) -> str | None:
    """Axes for an ImageJ file: ``axes`` when ImageJ can store them (letters of TZCYXS in that order,
    ending in YX), else ZYX / YX; None when ImageJ cannot hold the array."""
    if axes and len(axes) == ndim and axes.endswith("YX") and len(set(axes)) == ndim \
            and all(a in IMAGEJ_AXES for a in axes) and list(axes) == sorted(axes, key=IMAGEJ_AXES.index):
        return axes
    return "ZYX"[-ndim:] if 2 <= ndim <= 3 else None


def write_tiff(p: Path, data: np.ndarray, spacing, reviewed_slices: list[int] | None = None,
               like_meta: dict | None = None, unit=None, origin=None, model_info: dict | None = None,
               ignore_value: int | None = None, class_names: list[str] | None = None) -> None:
    """Write ``data`` with ``spacing``; ``like_meta`` (the source Volume's meta) gives the axes label
    and, for an ImageJ source, the ImageJ format with its unit (Fiji then shows the same calibration).

    ``unit``: the length unit of ``spacing`` (``"µm"``, ``"mm"``, a napari layer's ``units``: one per
    axis), else the source's (``like_meta``: its ImageJ unit, ``unit``, mm for NIfTI / DICOM). With a
    unit the file is an ImageJ TIFF where ImageJ can hold the values (2D as 3D): resolution and unit
    in its description, so Fiji and :func:`read_tiff` read the pixel size back in that unit. ``origin``: the
    ImageJ calibration origin in pixels per array axis (a coarser map's offset); ``model_info``: the model
    that made a mask (a description entry, read back as ``meta["model_info"]``), as ``ignore_value`` (the 'ignore'
    value of a reopened export's unreviewed slices, ``meta["ignore_value"]``) and ``class_names`` (a mask's, one per
    value from 0, ``meta["class_names"]``)."""
    import tifffile

    like_meta = like_meta or {}
    sp = list(spacing or (1.0,) * data.ndim)
    if data.dtype in (np.float64, np.int64, np.uint64, np.bool_):
        data = data.astype({"f": np.float32, "i": np.int32, "u": np.uint32, "b": np.uint8}[data.dtype.kind])
    kwargs: dict[str, Any] = {}
    if data.ndim >= 2:
        kwargs["resolution"] = (1.0 / float(sp[-1]), 1.0 / float(sp[-2]))
        kwargs["resolutionunit"] = 1  # NONE: units per pixel as the spacing says (not dots per inch)
    source_axes = like_meta.get("axes")
    source_axes = source_axes if isinstance(source_axes, str) and len(source_axes) == data.ndim \
        and source_axes.isalpha() and source_axes.isupper() and len(set(source_axes)) == data.ndim else None
    ij_meta = dict(like_meta["imagej"]) if isinstance(like_meta.get("imagej"), dict) else None
    if ij_meta and origin is not None:  # a map on its own grid: its origin replaces the source's
        ij_meta = {k: v for k, v in ij_meta.items() if k not in ("xorigin", "yorigin", "zorigin")}
    model = model_info_of(model_info)
    model_note = json.dumps(model, separators=(",", ":")) if model is not None else None  # ASCII (\u escapes)
    names_note = json.dumps([str(n) for n in class_names], separators=(",", ":")) if class_names else None
    axes_for_units = _imagej_axes(source_axes, data.ndim) or source_axes or "ZYX"[-data.ndim:]
    units = _unit_entries(unit, data.ndim, axes_for_units) if unit is not None else {}
    if not units and not (ij_meta or {}).get("unit"):
        units = _unit_entries(_source_unit(like_meta), data.ndim, axes_for_units)
    if units:  # a given unit replaces the source's
        ij_meta = {**{k: v for k, v in (ij_meta or {}).items() if k not in ("unit", "yunit", "zunit")}, **units}
    ij_axes = _imagej_axes(source_axes, data.ndim) if ij_meta is not None else None
    ij_data = _imagej_data(data) if ij_axes else None
    if ij_axes and ij_data is not None:
        metadata: dict[str, Any] = {"axes": ij_axes, **{k: _ascii(v) for k, v in ij_meta.items()}}
        if "Z" in ij_axes:
            metadata["spacing"] = float(sp[ij_axes.index("Z")])
        metadata.update(_origin_entries(origin, ij_axes))
        if reviewed_slices is not None:  # ImageJ ignores description entries it does not know
            metadata["reviewed_slices"] = ",".join(str(z) for z in sorted({int(z) for z in reviewed_slices}))
        if model_note is not None:
            metadata[MODEL_KEY] = model_note
        if ignore_value is not None:
            metadata[IGNORE_KEY] = int(ignore_value)
        if names_note is not None:
            metadata[NAMES_KEY] = names_note
        atomic_write(p, lambda tmp: tifffile.imwrite(tmp, ij_data, imagej=True, metadata=metadata, **kwargs))
        return
    axes = source_axes or ("ZYX"[-data.ndim:] if data.ndim <= 3 else None)
    metadata = {"axes": axes} if axes else None
    if metadata is not None and data.ndim >= 3 and ("Z" in axes or "T" not in axes):
        metadata["spacing"] = float(sp[axes.index("Z")] if "Z" in axes else sp[-3])  # (a time-lapse has no z spacing)
    unit_name = tiff_unit((ij_meta or {}).get("unit"))
    if metadata is not None and unit_name:  # ImageJ cannot hold these values: the unit in the JSON description
        metadata["unit"] = unit_name
    if reviewed_slices is not None and metadata is not None:  # in tifffile's JSON description
        metadata["reviewed_slices"] = sorted({int(z) for z in reviewed_slices})
    if model_note is not None and metadata is not None:
        metadata[MODEL_KEY] = model_note
    if ignore_value is not None and metadata is not None:
        metadata[IGNORE_KEY] = int(ignore_value)
    if names_note is not None and metadata is not None:
        metadata[NAMES_KEY] = names_note
    atomic_write(p, lambda tmp: tifffile.imwrite(tmp, data, metadata=metadata, compression="zlib",
                                                 photometric="minisblack", **kwargs))
