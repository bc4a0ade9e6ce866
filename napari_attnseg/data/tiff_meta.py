"""TIFF metadata helpers of :mod:`napari_attnseg.data.tiff`: length units as ImageJ writes them, ImageJ description
escapes, and the OME pixel sizes, channel names and image series a file holds."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np

INCH, CENTIMETER = 2, 3  # TIFF ResolutionUnit values; inch is also the TIFF default when the tag is absent

# OME length units (UnitsLength) in micrometres; an OME pixel size without a unit is in µm.
OME_UNITS_UM = {"pm": 1e-6, "Å": 1e-4, "nm": 1e-3, "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0,
                "mm": 1e3, "cm": 1e4, "dm": 1e5, "m": 1e6, "in": 25400.0}
# ImageJ description entries kept in Volume.meta["imagej"] and written back (JSON-safe values only).
IMAGEJ_KEYS = ("unit", "yunit", "zunit", "tunit", "finterval", "xorigin", "yorigin", "zorigin")
IMAGEJ_AXES = "TZCYXS"  # the axes ImageJ knows, in the only order it stores them
IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)
# length units as ImageJ writes them, from the spellings of ImageJ, OME, NIfTI and napari (pint)
_UNIT_NAMES = {"micron": ("micron", "microns", "um", "µm", "μm", "micrometer", "micrometre", "micrometers"),
               "nm": ("nm", "nanometer", "nanometre", "nanometers"),
               "mm": ("mm", "millimeter", "millimetre", "millimeters"),
               "cm": ("cm", "centimeter", "centimetre", "centimeters"),
               "m": ("m", "meter", "metre", "meters"), "inch": ("inch", "in", "inches")}
UNITS = {name: unit for unit, names in _UNIT_NAMES.items() for name in names}
_NO_UNIT = ("", "pixel", "pixels", "px", "unknown", "none", "dimensionless")


def tiff_unit(unit) -> str | None:
    """A length unit as ImageJ writes it (``micrometer``, ``µm``, ``um`` -> ``micron``; a napari / pint
    unit as its name), None for none (``pixel``, ``unknown``); another name is kept as it is."""
    if unit is None:
        return None
    text = _unescape(str(unit)).strip()
    if text.lower() in _NO_UNIT:
        return None
    return UNITS.get(text, UNITS.get(text.lower(), text))


def _source_unit(like_meta: dict):
    """The length unit of a source Volume's spacing: its ``unit`` (one, or one per axis), mm for DICOM
    and NIfTI (the NIfTI's own xyz unit where it names one)."""
    unit = like_meta.get("unit")
    if isinstance(unit, (list, tuple)) or tiff_unit(unit) or like_meta.get("format") not in ("nifti", "dicom"):
        return unit
    nifti = like_meta.get("nifti") if isinstance(like_meta.get("nifti"), dict) else {}
    return tiff_unit(nifti.get("xyz_units")) or "mm"


def _unit_entries(unit, ndim: int, axes: str) -> dict[str, str]:
    """ImageJ ``unit`` (x) and, where they differ, ``yunit`` / ``zunit`` from one unit or one per axis."""
    per_axis = [unit] * ndim if isinstance(unit, (str, type(None))) or not hasattr(unit, "__len__") \
        else list(unit)[-ndim:]
    if len(per_axis) != ndim:
        return {}
    names = [tiff_unit(u) for u in per_axis]
    x = names[axes.index("X")] if "X" in axes else names[-1]
    if not x:
        return {}
    entries = {"unit": x}
    for letter in "YZ":
        other = names[axes.index(letter)] if letter in axes else None
        if other and other != x:
            entries[f"{letter.lower()}unit"] = other
    return entries


def _ome_pixels(tif, series: int = 0):
    """The OME Pixels element of image ``series`` (tifffile's series, one per OME Image; None for a file without OME
    metadata, or unreadable metadata)."""
    if not tif.is_ome or not tif.ome_metadata:
        return None
    try:
        root = ET.fromstring(tif.ome_metadata)
    except ET.ParseError:
        return None
    found = [e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"]
    return found[series] if series < len(found) else None


def _ome_channels(tif, series: int = 0) -> list[str] | None:
    """The OME channel names of image ``series`` (``DAPI``, ``GFP``; an unnamed one ``c<k>``), None without."""
    pixels = _ome_pixels(tif, series)
    channels = [e for e in (pixels if pixels is not None else ()) if e.tag.rsplit("}", 1)[-1] == "Channel"]
    names = [str(e.get("Name") or "").strip() or f"c{k}" for k, e in enumerate(channels)]
    return names if any(not n.startswith("c") or not n[1:].isdigit() for n in names) else None


def _ome_sizes(tif, series: int = 0) -> dict[str, float]:
    """PhysicalSizeX/Y/Z of the OME Pixels element of image ``series``, in µm (absent or unknown unit: left out)."""
    pixels = _ome_pixels(tif, series)
    sizes: dict[str, float] = {}
    for letter in "XYZ" if pixels is not None else "":
        value, unit = pixels.get(f"PhysicalSize{letter}"), pixels.get(f"PhysicalSize{letter}Unit", "µm")
        try:
            size = float(value) * OME_UNITS_UM[unit.strip()] if value is not None else 0.0
        except (KeyError, ValueError):
            continue
        if np.isfinite(size) and size > 0:
            sizes[letter] = size
    return sizes


def shaped_of(tif, series: int = 0) -> dict:
    """tifffile's JSON description of image ``series`` (axes, z spacing, unit, marks; ``{}`` without): a file of
    several series written by tifffile has one per series (the first one's gave every series its z spacing)."""
    shaped = tif.shaped_metadata or ()
    found = shaped[series] if len(shaped) == len(tif.series) and series < len(shaped) else \
        (shaped[0] if shaped and series == 0 else None)
    return found if isinstance(found, dict) else {}


def _unescape(value):
    """An ImageJ description value with its ``\\uXXXX`` escapes decoded (``\\u00B5m`` -> ``µm``)."""
    if not isinstance(value, str):
        return value
    return re.sub(r"\\u([0-9A-Fa-f]{4})", lambda m: chr(int(m.group(1), 16)), value)


def _ascii(value):
    """A description value as ImageJ escapes it (``µm`` -> ``\\u00B5m``): the description is ASCII."""
    if not isinstance(value, str):
        return value
    return "".join(c if ord(c) < 128 else f"\\u{ord(c):04X}" for c in value)


def series_label(series, k: int) -> str:
    """How a message or a layer names image series ``k`` of a TIFF: its OME / tifffile name ('pos2'), else 'series k'."""
    name = str(getattr(series, "name", "") or "").strip()
    return name if name and name.lower() not in ("", "baseline", "shaped", "generic", "ome", "imagej") else f"series {k}"


def series_note(tif, name: str, read: int) -> str | None:
    """What a reader says of a TIFF holding several image series (stage positions, scenes of an OME-TIFF): which one
    was read and how to get another; None for a file of one series (a pyramid's levels are one series)."""
    if len(tif.series) < 2:
        return None
    sizes = [f"{k} {series_label(s, k)!r} ({' x '.join(map(str, s.shape))}, {s.axes})" for k, s in enumerate(tif.series)]
    return (f"{name} holds {len(tif.series)} image series (stage positions or scenes): series {sizes[read]} was read, "
            f"not {', '.join(sizes[:read] + sizes[read + 1:])}. napari (File > Open) opens each series as its own layer; "
            "to segment another with attnseg predict or export, save it as a file of its own (Fiji: File > Import > "
            "Bio-Formats, then File > Save As > Tiff, keeps its pixel size).")


def script_stack_axes(tif, series: int, axes: str) -> str:
    """``axes`` of image ``series``, but QYX for a (3 or 4, Y, X) array that tifffile stored as planar RGB(A) only by its
    default (``tifffile.imwrite(path, array)`` with no photometric nor axes; scikit-image's ``imsave`` too): its JSON
    description records the array's shape, channel-first, and no axes. Such a file is a short z-stack or channels
    saved by a script, as its (2, Y, X) and (5, Y, X) siblings are (tifffile writes those as planes, QYX, and will
    write these so too): read as colours, a 3-slice stack was refused as "3 channels, 0 red, 1 green, 2 blue" and 4
    planes were taken for RGBA. An RGB picture, (Y, X, 3) (YXS), and a file naming its axes keep theirs."""
    if axes != "SYX" or tif.is_imagej or tif.is_ome:
        return axes
    series_ = tif.series[series]
    page = series_.keyframe
    shaped = shaped_of(tif, series)
    if int(page.planarconfig) != 2 or "axes" in shaped or list(shaped.get("shape") or []) != list(series_.shape):
        return axes  # (2: PLANARCONFIG SEPARATE, the colours stored as planes)
    return "QYX"

