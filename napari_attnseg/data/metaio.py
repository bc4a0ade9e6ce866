"""ITK MetaImage (``.mha`` / ``.mhd`` + raw) and NRRD (``.nrrd`` / ``.nhdr`` + raw): the formats of 3D Slicer,
ITK-SNAP exports and many challenge datasets (LUNA16's CTs are ``.mhd``; Grand Challenge serves ``.mha``).

Both store the array with x fastest, so reading it in C order gives (z, y, x) = (k, j, i), this project's axis
convention, and a header placing index (i, j, k) in patient space: MetaImage in LPS (``Offset``,
``ElementSpacing``, ``TransformMatrix`` whose n-th triple is the direction of axis n, as ITK reads it), NRRD in
its ``space`` (``space directions``: one vector per axis, spacing included; ``space origin``). The volume comes
back as a NIfTI read would: a RAS affine for (i, j, k) and ``meta["nifti"]`` as if the file were a NIfTI with
that affine (codes 1, "scanner"), so results are written as NIfTI files that overlay the scan in every viewer.
Only what these readers need is parsed; compressed data is zlib (MetaImage ``CompressedData``) or gzip (NRRD).
A 2D file (``NDims = 2``, NRRD ``dimension: 2``: an X-ray, a fundus or microscopy image from an ITK or Grand
Challenge pipeline) is read as (y, x) with its spacing and placement, as a 2D NIfTI is, and its results are 2D NIfTI.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .volume import Volume

META_SUFFIXES = (".mha", ".mhd")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
_MET_TYPES = {"MET_UCHAR": "u1", "MET_CHAR": "i1", "MET_USHORT": "u2", "MET_SHORT": "i2", "MET_UINT": "u4",
              "MET_INT": "i4", "MET_ULONG": "u8", "MET_LONG": "i8", "MET_ULONG_LONG": "u8", "MET_LONG_LONG": "i8",
              "MET_FLOAT": "f4", "MET_DOUBLE": "f8"}
_NRRD_TYPES = {"uchar": "u1", "unsigned char": "u1", "uint8": "u1", "uint8_t": "u1", "signed char": "i1", "int8": "i1",
               "int8_t": "i1", "short": "i2", "short int": "i2", "signed short": "i2", "signed short int": "i2",
               "int16": "i2", "int16_t": "i2", "ushort": "u2", "unsigned short": "u2", "unsigned short int": "u2",
               "uint16": "u2", "uint16_t": "u2", "int": "i4", "signed int": "i4", "int32": "i4", "int32_t": "i4",
               "uint": "u4", "unsigned int": "u4", "uint32": "u4", "uint32_t": "u4", "longlong": "i8",
               "long long": "i8", "int64": "i8", "int64_t": "i8", "ulonglong": "u8", "unsigned long long": "u8",
               "uint64": "u8", "uint64_t": "u8", "float": "f4", "double": "f8"}
_SPACES = {"left-posterior-superior": "LPS", "lps": "LPS", "right-anterior-superior": "RAS", "ras": "RAS",
           "left-anterior-superior": "LAS", "las": "LAS"}
_FLIPS = {"LPS": np.diag([-1.0, -1.0, 1.0]), "LAS": np.diag([-1.0, 1.0, 1.0]), "RAS": np.eye(3)}


def _numbers(text: str, p: Path, key: str, count: int = 0) -> list[float]:
    """The numbers of a header field (at least ``count`` of them)."""
    try:
        values = [float(v) for v in text.replace("(", " ").replace(")", " ").replace(",", " ").split()]
    except ValueError:
        raise InputError(f"{p}: the header's {key} ({text!r}) is not a list of numbers.") from None
    if len(values) < count:
        raise InputError(f"{p}: the header's {key} ({text!r}) has {len(values)} numbers where the image's dimensions "
                         f"need {count}; the header is damaged: save the image again from the program that made it.")
    return values


def _read_header(p: Path, first_line: str | None) -> tuple[dict[str, str], int]:
    """``key -> value`` and the byte offset where the data starts (after a blank line for NRRD, after
    ``ElementDataFile`` for MetaImage)."""
    raw = p.read_bytes() if p.stat().st_size < 2**16 else p.open("rb").read(2**16)
    fields: dict[str, str] = {}
    pos = 0
    nrrd = first_line is not None
    for n, line in enumerate(raw.split(b"\n")):
        pos += len(line) + 1
        text = line.decode("latin-1").rstrip("\r")
        if n == 0 and nrrd:
            if not text.startswith(first_line):
                raise InputError(f"{p} is not a NRRD file (it does not start with 'NRRD').")
            continue
        if nrrd and not text.strip():
            return fields, pos
        if nrrd and text.startswith("#"):
            continue
        sep = ":" if nrrd else "="
        if nrrd and ":=" in text:  # key/value pairs of the user's own (3D Slicer's segment names): not geometry
            key, value = text.split(":=", 1)
            fields[f"{key.strip()}:="] = value.strip()
            continue
        if sep not in text:
            raise InputError(f"{p}: unreadable header line {text!r}.")
        key, value = text.split(sep, 1)
        fields[key.strip() if nrrd else key.strip().lower()] = value.strip()
        if not nrrd and key.strip().lower() == "elementdatafile":
            return fields, pos
    if nrrd:
        return fields, pos  # a detached header (.nhdr) may end without a blank line
    raise InputError(f"{p}: the header has no ElementDataFile line; the file is cut short or not a MetaImage.")


def data_file_of(p: Path) -> Path | None:
    """The data file a detached header (``.mhd``, ``.nhdr``) names, where it is (None: the data is inside, the file
    is no such header, or its header cannot be read)."""
    p = Path(p)
    if not p.name.lower().endswith((".mhd", ".nhdr")) or not p.is_file():
        return None
    try:
        f, _ = _read_header(p, "NRRD" if p.name.lower().endswith(".nhdr") else None)
    except (InputError, OSError):
        return None
    where = f.get("elementdatafile", f.get("data file", f.get("datafile", "LOCAL")))
    if where in ("LOCAL", "") or " " in where.strip():  # (a list or pattern of files: not one data file)
        return None
    f = Path(where) if Path(where).is_absolute() else p.resolve().parent / where
    return f if f.exists() else None


def _payload(p: Path, where: str, offset: int, compressed: str | None) -> bytes:
    """The data bytes: after the header (``where`` LOCAL / attached) or in the file the header names."""
    if where in ("LOCAL", ""):
        data = p.read_bytes()[offset:]
    else:
        f = (p.parent / where) if not Path(where).is_absolute() else Path(where)
        if not f.exists() and p.is_symlink():  # a link to the header (attnseg predict's <stem>_image.mhd): the data
            f = p.resolve().parent / where  # file lies beside the header the link points to
        if not f.exists():
            raise InputError(f"{p}: its data file {f} does not exist; keep the header and its data file together.")
        data = f.read_bytes()
    if compressed == "zlib":
        return zlib.decompress(data)
    if compressed == "gzip":
        return gzip.decompress(data)
    return data


def _volume(p: Path, data: np.ndarray, spacing: np.ndarray, directions: np.ndarray, origin: np.ndarray,
            space: str, kind: str) -> Volume:
    """``data`` (k, j, i) or (j, i); ``directions`` (d, n): column n the unit direction of axis n (i, j, k) in
    ``space``, of d = 2 or 3 dimensions (a 2D image in a 2D space, or placed in 3D); ``origin``: d values. A 2D
    image gets a 3D affine whose third axis is the plane's normal, as a 2D NIfTI's (its results are 2D NIfTI)."""
    n, d = data.ndim, len(origin)
    steps, corner = np.eye(3), np.zeros(3)
    steps[:d, :n] = np.asarray(directions, float)[:d, :n]
    corner[:d] = origin[:d]
    if n == 2 and d == 3:  # a plane in 3D: its normal as the third axis
        normal = np.cross(steps[:, 0], steps[:, 1])
        steps[:, 2] = normal / np.linalg.norm(normal) if np.linalg.norm(normal) > 1e-9 else [0.0, 0.0, 1.0]
    to_ras = _FLIPS[space]
    affine = np.eye(4)
    affine[:3, :3] = to_ras @ steps @ np.diag([*spacing[:n], *[1.0] * (3 - n)])
    affine[:3, 3] = to_ras @ corner
    meta: dict[str, Any] = {
        "source_path": str(p), "format": "nifti", "file_format": kind, "axis_order": "kji"[-n:],
        "nifti": {"stored_shape": list(reversed(data.shape)), "stored_dtype": str(data.dtype), "qform_code": 1,
                  "sform_code": 1, "qform": affine.tolist(), "xyz_units": "mm", "scl_slope": None, "scl_inter": None},
    }
    return Volume(data, tuple(float(s) for s in reversed(spacing[:n])), affine, meta)


def read_metaimage(p: Path) -> Volume:
    """A 2D or 3D MetaImage (``.mha`` with its data inside, ``.mhd`` naming a raw file)."""
    f, offset = _read_header(p, None)
    dims = [int(v) for v in _numbers(f.get("dimsize", ""), p, "DimSize")]
    n = len(dims)
    if f.get("ndims", str(n)).strip() != str(n) or n not in (2, 3):
        raise InputError(f"{p}: a MetaImage of NDims {f.get('ndims', n)} and DimSize {f.get('dimsize')!r}; "
                         "napari-attnseg reads 2D and 3D MetaImages (a 4D series: save each volume on its own).")
    if int(f.get("elementnumberofchannels", 1)) != 1:
        raise InputError(f"{p}: {f['elementnumberofchannels']} values per voxel; save one channel per file.")
    kind = _MET_TYPES.get(f.get("elementtype", "").upper())
    if kind is None:
        raise InputError(f"{p}: element type {f.get('elementtype')!r} is not supported ({', '.join(_MET_TYPES)}).")
    big = f.get("binarydatabyteordermsb", f.get("elementbyteordermsb", "False")).lower() == "true"
    dtype = np.dtype(kind).newbyteorder(">" if big else "<")
    compressed = "zlib" if f.get("compresseddata", "False").lower() == "true" else None
    buf = _payload(p, f.get("elementdatafile", "LOCAL"), offset, compressed)
    if len(buf) < int(np.prod(dims)) * dtype.itemsize:
        raise InputError(f"{p}: {len(buf)} bytes of data for {dims} voxels of {dtype}; the file is cut short.")
    data = np.frombuffer(buf, dtype, count=int(np.prod(dims))).reshape(tuple(reversed(dims)))
    data = data.astype(dtype.newbyteorder("="))
    ones, zeros = " ".join(["1"] * n), " ".join(["0"] * n)
    spacing = np.asarray(_numbers(f.get("elementspacing", f.get("elementsize", ones)), p, "ElementSpacing", n)[:n])
    origin = np.asarray(_numbers(f.get("offset", f.get("origin", f.get("position", zeros))), p, "Offset", n)[:n])
    identity = " ".join(map(str, np.eye(n).ravel().tolist()))
    matrix = _numbers(f.get("transformmatrix", f.get("rotation", f.get("orientation", identity))), p,
                      "TransformMatrix", n * n)
    directions = np.asarray(matrix[:n * n]).reshape(n, n).T  # (ITK: the n-th tuple is axis n's direction)
    return _volume(p, data, spacing, directions, origin, "LPS", "metaimage")  # (ITK's physical space is LPS)


def read_nrrd(p: Path) -> Volume:
    """A 2D or 3D NRRD (``.nrrd``, or a ``.nhdr`` header naming its data file); raw or gzip encoding."""
    f, offset = _read_header(p, "NRRD")
    dims = [int(v) for v in _numbers(f.get("sizes", ""), p, "sizes")]
    n = len(dims)
    if f.get("dimension", str(n)).strip() != str(n) or n not in (2, 3):
        raise InputError(f"{p}: a {f.get('dimension', n)}-dimensional NRRD; napari-attnseg reads 2D images and 3D "
                         "volumes (a segmentation with several layers or a 4D series: save each volume on its own).")
    kind = _NRRD_TYPES.get(f.get("type", "").lower())
    if kind is None:
        raise InputError(f"{p}: NRRD type {f.get('type')!r} is not supported.")
    encoding = f.get("encoding", "raw").lower()
    if encoding not in ("raw", "gzip", "gz"):
        raise InputError(f"{p}: NRRD encoding {encoding!r} is not supported (raw or gzip); save it again with one.")
    dtype = np.dtype(kind).newbyteorder(">" if f.get("endian", "little").lower() == "big" else "<")
    where = f.get("data file", f.get("datafile", "LOCAL"))
    buf = _payload(p, where, offset, "gzip" if encoding in ("gzip", "gz") else None)
    voxels = int(np.prod(dims))
    if len(buf) < voxels * dtype.itemsize:
        raise InputError(f"{p}: {len(buf)} bytes of data for {dims} voxels of {dtype}; the file is cut short.")
    data = np.frombuffer(buf, dtype, count=voxels,
                         offset=len(buf) - voxels * dtype.itemsize if where == "LOCAL" else 0)
    data = data.reshape(tuple(reversed(dims))).astype(dtype.newbyteorder("="))
    space = _SPACES.get(f.get("space", "").lower())
    if "space" not in f and "space dimension" in f:  # a space without a name (ITK writes 2D images so): ITK's, LPS
        space = "LPS"
    if "space directions" in f and space is None:
        raise InputError(f"{p}: NRRD space {f.get('space')!r} is not an anatomical one napari-attnseg places (RAS, LPS, "
                         "LAS); save it again in one of them (3D Slicer does by default).")
    if "space directions" in f:
        d = 3 if "space" in f else int(_numbers(f.get("space dimension", str(n)), p, "space dimension", 1)[0])
        if d not in (2, 3) or d < n:  # (a named space is 3D)
            raise InputError(f"{p}: a {n}D NRRD in a space of {d} dimensions; napari-attnseg places images in 2D or 3D.")
        steps = np.asarray(_numbers(f["space directions"], p, "space directions", n * d)[:n * d]).reshape(n, d).T
        spacing = np.linalg.norm(steps, axis=0)  # (column n of steps: axis n)
        if not np.all(spacing > 0):
            raise InputError(f"{p}: its space directions ({f['space directions']}) give an axis no length.")
        directions = steps / spacing
        origin = np.asarray(_numbers(f.get("space origin", f"({','.join(['0'] * d)})"), p, "space origin", d)[:d])
    else:  # no placement in space: spacings only, axes as stored
        spacing = np.asarray(_numbers(f.get("spacings", " ".join(["1"] * n)), p, "spacings", n)[:n])
        directions, origin, space = np.eye(n), np.zeros(n), "RAS"
    vol = _volume(p, data, spacing, directions, origin, space, "nrrd")
    if (names := _segment_names(f, data)) is not None:
        vol.meta["class_names"] = names
    return vol


def _segment_names(f: dict[str, str], data: np.ndarray) -> list[str] | None:
    """A 3D Slicer segmentation's (``.seg.nrrd``) names per label value, background first (``SegmentN_Name`` and
    ``SegmentN_LabelValue``), as a mask saved by the Correct panel carries them; None for other files."""
    values: dict[int, str] = {}
    for key, name in f.items():
        if key.startswith("Segment") and key.endswith("_Name:="):
            value = f.get(key.replace("_Name:=", "_LabelValue:="), "")
            if not value.strip().isdigit() or not np.issubdtype(data.dtype, np.integer):
                return None
            values[int(value)] = name or f"label {value}"
    if not values or 0 in values or max(values) > 255:
        return None
    return ["background", *(values.get(v, f"label {v}") for v in range(1, max(values) + 1))]
