"""A mask given where an image is expected (``attnseg predict out/ct_mask.nii.gz``, ``--image labels.tif``): the model
ran on the mask's shapes and wrote a confident, meaningless result, unsaid. An output of ``attnseg predict`` (named by
a record beside it, or a mask carrying the model that made it) is refused naming the image it was made on; an image of
whole numbers constant over each object (a label map) runs, with a warning."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from ..errors import InputError


def refuse_our_output(src: str | Path, meta: dict | None = None) -> None:
    """Refuse ``src`` when ``attnseg predict`` wrote it (a mask, probability or attention map): say which image it was
    made on. ``meta``: the file's, once read (a mask saved by this package records its model)."""
    from ..results import RECORD_SUFFIX

    src = Path(src)
    folder = src.parent if src.parent.is_dir() else None
    try:
        records = _records_in(str(folder), folder.stat().st_mtime_ns, RECORD_SUFFIX) if folder is not None else ()
    except OSError:
        records = ()
    for record in map(Path, records):
        try:
            st = record.stat()
            data = _record_outputs(str(record), st.st_mtime_ns, st.st_size)
        except OSError:
            continue
        if data is not None and src.name in data["outputs"]:
            kind = "mask" if src.name == data.get("mask") else "probability map" if src.name == data.get(
                "probability") else "output"
            made_on = f", {data['input']}" if data.get("input") else ""
            raise InputError(f"{src} is the {kind} attnseg predict wrote ({record.name}), not an image to segment: "
                             f"give the image it was made on{made_on}.")
    if meta and meta.get("model_info"):
        raise InputError(f"{src} is a mask attnseg wrote (it records the model that made it), not an image to segment: "
                         "give the image the mask was made on.")


@functools.lru_cache(maxsize=64)
def _records_in(folder: str, mtime_ns: int, suffix: str) -> tuple[str, ...]:
    """The records in ``folder``, listed once per version of the folder (a file added or renamed in changes it)."""
    return tuple(sorted(str(p) for p in Path(folder).glob(f"*{suffix}")))


@functools.lru_cache(maxsize=8192)
def _record_outputs(path: str, mtime_ns: int, size: int) -> dict | None:
    """What a ``_predict.json`` names (its outputs, mask, probability map and input), read once per version of the
    file: a cohort of N links in one folder checks each input against the folder's N records (500 inputs: 11 s of
    JSON reading before, one read per record now)."""
    try:
        data = json.loads(Path(path).read_text())
        return {"outputs": frozenset(str(o) for o in data.get("outputs") or []), "mask": data.get("mask"),
                "probability": data.get("probability"), "input": data.get("input")}
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def label_map_warning(data, src: str | Path) -> str:
    """A warning when ``data`` looks like a label map (a mask, instance ids), not an image: whole numbers, at most
    1000 values, differing in at most 10 % of the neighbouring pairs of non-zero voxels along the last axis (the nuclei
    labels 0.3 %, brain-mri-3d's grey/white-matter mask of the MNI T1 5.6 %; the nuclei image 95 %, the lung CT 90 %,
    the MNI T1 91 %, brain1's T1 97 %); '' otherwise."""
    a = data if hasattr(data, "dtype") and hasattr(data, "shape") else np.asarray(data)
    if a.dtype.kind not in "biu" or a.ndim < 2 or a.shape[-1] < 2:
        return ""
    if a.ndim >= 3 and a.size > 1 << 24:  # a big volume: every k-th slice (bool copies of 16 M voxels at most)
        a = a[:: -(-a.size // (1 << 24))]
    a = np.asarray(a)
    lo, hi = a[..., :-1], a[..., 1:]
    both = (lo != 0) & (hi != 0)
    pairs = int(np.count_nonzero(both))
    if pairs < 20:
        return ""
    differ = int(np.count_nonzero(both & (lo != hi)))
    if differ > 0.1 * pairs:
        return ""
    values = np.unique(a)
    if values.size < 2 or values.size > 1000:
        return ""
    return (f"{src} looks like a label mask, not an image: {values.size} whole-number values ({values[0]} to "
            f"{values[-1]}), constant over each object ({100 * differ / pairs:.1f}% of neighbouring non-zero voxels "
            "differ; in an image most do). The model segmented the mask's shapes: give the image the mask was made on.")


def unedited_prediction(path: str | Path) -> str:
    """The name of the ``attnseg predict`` record that lists ``path`` as its mask when the mask is unchanged since:
    its size and modification time those the record stored for it (``output_stats``, as a cohort rerun tells an
    edited mask); the model's own prediction, no corrections. '' otherwise: a mask edited and saved over, one without
    its record, or a record without those figures. (Comparing modification times called a corrected mask unchanged
    once a cohort rerun had rewritten the record for a moved scan.)"""
    from ..results import RECORD_SUFFIX

    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return ""
    for record in sorted(path.parent.glob(f"*{RECORD_SUFFIX}")):
        try:
            data = json.loads(record.read_text())
            listed = data.get("mask") == path.name and path.name in (data.get("outputs") or [])
            if listed and (data.get("output_stats") or {}).get(path.name) == [st.st_size, st.st_mtime_ns]:
                return record.name
        except (OSError, ValueError, AttributeError, TypeError):
            continue
    return ""


def stale_prediction(labels: str | Path, image: str | Path) -> str:
    """When ``labels`` is the mask of an ``attnseg predict`` record beside it (corrected since or not) whose input is
    ``image``, and ``image`` changed since that prediction (another scan saved under its name): what changed.
    '' otherwise."""
    from ..results import RECORD_SUFFIX
    from ..results_layers import input_changed

    path, image = Path(labels), Path(image)
    for record in sorted(path.parent.glob(f"*{RECORD_SUFFIX}")):
        try:
            data = json.loads(record.read_text())
            if data.get("mask") != path.name or Path(str(data.get("input", ""))).resolve() != image.resolve():
                continue
        except (OSError, ValueError, AttributeError, TypeError):
            continue
        if changed := input_changed(data, image):
            return f"{changed} ({record.name})"
    return ""


def automatic_seg(path: str | Path) -> str:
    """What made ``path`` when it is a DICOM SEG attnseg wrote whose segments are all AUTOMATIC (``attnseg predict
    --dicom-seg``'s, or a model's mask saved from napari unchanged and unreviewed): the model's own segmentation, no
    corrections, e.g. ``"nuclei-2d's segmentation (attnseg predict wrote it: CT_predict.json)"``. '' for any other file
    (a SEG re-saved after correcting is SEMIAUTOMATIC, one drawn by hand MANUAL, another tool's has its Manufacturer)."""
    from ..results import RECORD_SUFFIX
    from .dicom_seg_write import MANUFACTURER

    path = Path(path)
    try:
        import pydicom

        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
        segments = list(ds.get("SegmentSequence") or [])
        kinds = {str(s.get("SegmentAlgorithmType") or "").upper() for s in segments}
        if str(ds.get("Manufacturer") or "") != MANUFACTURER or kinds != {"AUTOMATIC"}:
            return ""
        model = str(segments[0].get("SegmentAlgorithmName") or "the model")
    except Exception:  # noqa: BLE001 - not a readable SEG: nothing to say (the reader says why)
        return ""
    for record in sorted(path.parent.glob(f"*{RECORD_SUFFIX}")):
        try:
            if json.loads(record.read_text()).get("dicom_seg") == path.name:
                return f"{model}'s segmentation (attnseg predict wrote it: {record.name})"
        except (OSError, ValueError, AttributeError, TypeError):
            continue
    return f"{model}'s segmentation (saved by attnseg as AUTOMATIC: unchanged and unreviewed)"


def looks_like_an_image(data) -> bool:
    """Values no mask holds: fractions, or more than 20 distinct values (a scan or photo, not classes; instance ids of
    that many objects look alike, which is why it is asked only of a pair whose image looks like a label mask), read
    on a sample of about a million voxels."""
    a = np.asarray(data).ravel()
    sample = a[:: max(1, a.size // 1_000_000)]
    if np.issubdtype(sample.dtype, np.floating) and not np.all(np.isfinite(sample) & (sample == np.round(sample))):
        return True
    return np.unique(sample).size > 20
