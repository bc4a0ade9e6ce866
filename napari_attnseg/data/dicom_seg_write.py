"""A predicted mask -> a DICOM Segmentation (SEG) on the DICOM series it was predicted from, for a PACS viewer, OHIF or
3D Slicer: ``attnseg predict CT_SERIES --dicom-seg``.

BINARY, one segment per foreground class of the model (named by its class names; algorithm AUTOMATIC, the model's
name and version; a mask a person corrected in napari's Correct tab, :mod:`.._napari.save_seg`: SEMIAUTOMATIC, or
MANUAL naming no algorithm when no model made it), one frame per segment and source slice that holds foreground.
Each frame is the source slice's own grid: its rows and columns as stored, its ImagePositionPatient and its image
(DerivationImageSequence). The slices are mapped to the mask's rows exactly as the reader placed them
(:func:`source_slices` runs the reader's own choice of series, volume and slice order, :mod:`.dicom`), never
re-sorted here. Patient, study and frame of reference come from the source; the SEG is a new series with new UIDs
(``pydicom.uid.generate_uid``). Images without a position in space (a radiograph, a secondary capture) get a SEG
without a Frame of Reference, its frames placed by the images they derive from (PS3.3 A.51.5.1, see
:func:`write_dicom_seg`). Written with pydicom only.

The slices a person marked reviewed (napari's Correct tab) travel in a private block (group 0071, creator
``napari-attnseg``): each one's ImagePositionPatient (LPS mm, 3 values a slice) and its slice number in the series'
reading order; :func:`.dicom_seg.read_dicom_seg` maps the positions back onto the image's slices (feet-first series,
a NIfTI converted from it) as ``meta["reviewed_slices"]``. A PACS that strips private tags drops only the marks.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .dicom_geometry import Frame

__all__ = ["REVIEWED_GROUP", "SEG_SOP_CLASS", "SEG_SUFFIX", "algorithm_of", "image_numbers", "refuse_not_dicom",
           "reviewed_numbers", "source_slices", "write_dicom_seg"]

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SEG_SUFFIX = "_seg.dcm"
ALGORITHM_TYPES = ("AUTOMATIC", "SEMIAUTOMATIC", "MANUAL")  # SegmentAlgorithmType's defined terms
MANUFACTURER = "napari-attnseg"  # (Manufacturer of the SEGs written here: how Save mask tells its own SEG files)
REVIEWED_GROUP = 0x0071  # private block (creator MANUFACTURER): 0x01 reviewed slices' positions (DS), 0x02 their
# numbers (IS), 0x03 the model's weights sha256 (LO: the digest ``attnseg export`` records; also the version)
# copied from the source: Patient, Clinical Trial Subject, General Study, Patient Study, Clinical Trial Study modules
PATIENT_STUDY = (
    "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "PatientBirthDate",
    "PatientSex", "OtherPatientIDsSequence", "PatientComments", "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence", "PatientBreedDescription", "PatientBreedCodeSequence", "ResponsiblePerson",
    "ResponsibleOrganization", "PatientIdentityRemoved", "DeidentificationMethod",
    "DeidentificationMethodCodeSequence", "ClinicalTrialSponsorName", "ClinicalTrialProtocolID",
    "ClinicalTrialProtocolName", "ClinicalTrialSiteID", "ClinicalTrialSiteName", "ClinicalTrialSubjectID",
    "ClinicalTrialSubjectReadingID", "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName",
    "StudyID", "AccessionNumber", "IssuerOfAccessionNumberSequence", "StudyDescription", "PatientAge", "PatientSize",
    "PatientWeight", "ClinicalTrialTimePointID", "ClinicalTrialTimePointDescription",
)
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber")  # present, empty when the source lacks them


def source_slices(src: str | Path) -> tuple[list[Frame | None], np.ndarray]:
    """The source frame of each slice of the volume :func:`.dicom.read_dicom_series` reads from ``src`` (None for a
    slice it inserted where the series misses one) and that volume's affine: the same headers, choices and order."""
    from .dicom import series_geometry

    geo, _ = series_geometry(Path(src))
    slots = geo.slots if geo.slots is not None else list(range(len(geo.frames)))
    slices: list[Frame | None] = [None] * (slots[-1] + 1)
    for slot, frame in zip(slots, geo.frames):
        slices[slot] = frame
    return slices, np.asarray(geo.affine, float)


def image_numbers(slices: Sequence[Frame | None], rows: Sequence[int]) -> tuple[list[int], bool]:
    """:func:`reviewed_numbers`' numbers, and True when they are InstanceNumbers."""
    kind, numbers, _ = reviewed_numbers(slices, rows)
    return numbers, kind == "images"


def reviewed_numbers(slices: Sequence[Frame | None], rows: Sequence[int]) -> tuple[str, list[int], int | None]:
    """How a PACS user finds the slices ``rows`` (0-based, of the volume :func:`source_slices` reads) of the series:
    ("images", their InstanceNumbers, None) when each real image is a one-frame image with a number of its own;
    ("frames", their 1-based frame numbers in the file, None) for one multi-frame file (an enhanced CT stored from the
    last position to the first: rows 0-1 are its frames 6 and 5); else ("slices", their 1-based positions among the
    series' real images, how many those are). A slice the reader inserted where the series misses an image (None in
    ``slices``: no image in the PACS) is left out of both the numbers and the count (was 'slices 3-5 of 7' for a
    series of 6 images), unless only such slices are given (then their positions in the volume, of its slices)."""
    rows = sorted({int(k) for k in rows})
    present = [f for f in slices if f is not None]
    real = [slices[k] for k in rows if 0 <= k < len(slices) and slices[k] is not None]
    if not real or not present:
        return "slices", [k + 1 for k in rows], len(slices)
    numbers = [f.instance for f in present]
    if all(f.frames_in_file == 1 for f in present) and None not in numbers and len(set(numbers)) == len(numbers):
        return "images", sorted(int(f.instance) for f in real), None
    if all(f.frames_in_file > 1 and f.path == present[0].path for f in present):
        return "frames", sorted(f.index + 1 for f in real), None
    order = {id(f): n for n, f in enumerate(present, 1)}
    return "slices", sorted(order[id(f)] for f in real), len(present)


def algorithm_of(model_info: dict | None) -> tuple[str, str, str | None]:
    """What a SEG names of the model that made a mask (``model_info``: ``model``, ``weights_sha256``, ``checkpoint``,
    as :func:`.volume.model_info_of` reads it): its name, its version and its weights' sha256 (also kept in the
    private block). The version is the full sha256 (64 hex digits: just the LO limit of AlgorithmVersion), else the
    checkpoint's file name, else 'unknown'. ``attnseg predict --dicom-seg`` and napari's Save mask name a model alike
    (predict named '<code version> (weights sha256 <12 digits>)', Save mask 'weights sha256 <12 digits>')."""
    info = model_info or {}
    sha = str(info.get("weights_sha256") or "") or None
    version = sha or Path(str(info.get("checkpoint") or "")).name or "unknown"
    return str(info.get("model") or "attnseg model"), _lo(version), sha


def refuse_not_dicom(inputs: Sequence[str | Path]) -> None:
    """``--dicom-seg`` places the mask on the DICOM series it was predicted from: refuse other inputs before any run."""
    from .io import image_format

    other = [p for p in inputs if image_format(p) != "dicom"]
    if other:
        shown = ", ".join(map(str, other[:3])) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
        raise InputError(f"--dicom-seg writes the mask as a DICOM SEG on the DICOM series it was predicted from, but "
                         f"{shown} {'is' if len(other) == 1 else 'are'} not DICOM: give DICOM series (folders or "
                         "files), or leave out --dicom-seg (the NIfTI/TIFF mask is written either way). Nothing was run.")


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _item(**values: Any):
    from pydicom.dataset import Dataset

    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _lo(text: str) -> str:
    """A LO value: at most 64 characters, no backslash."""
    return str(text).replace("\\", "/")[:64]


def _segment(number: int, label: str, algorithm: str, version: str, algorithm_type: str = "AUTOMATIC"):
    """A SegmentSequence item; MANUAL (drawn by a person) names no algorithm (SegmentAlgorithmName and its
    identification are required only for an algorithm's segments, PS3.3 C.8.20.4)."""
    from pydicom.sequence import Sequence as Seq

    item = _item(SegmentNumber=number, SegmentLabel=_lo(label),
                 SegmentedPropertyCategoryCodeSequence=Seq([_code("91723000", "SCT", "Anatomical Structure")]),
                 SegmentedPropertyTypeCodeSequence=Seq([_code("85756007", "SCT", "Tissue")]),
                 SegmentAlgorithmType=algorithm_type)
    if algorithm_type != "MANUAL":
        family = Seq([_code("123110", "DCM", "Artificial Intelligence")])
        item.SegmentAlgorithmName = _lo(algorithm)
        item.SegmentationAlgorithmIdentificationSequence = Seq([_item(
            AlgorithmFamilyCodeSequence=family, AlgorithmName=_lo(algorithm), AlgorithmVersion=_lo(version))])
    return item


def _check_grid(src: Path, labels: np.ndarray, slices: list[Frame | None], affine: np.ndarray,
                expected: np.ndarray | None, redo: str) -> None:
    """The mask is on the grid the series reads as now (not changed since it was read for the prediction)."""
    first = next(f for f in slices if f is not None)
    grid = (len(slices), *first.shape)
    moved = expected is not None and not np.allclose(np.asarray(expected, float), affine, atol=1e-3)
    if labels.shape != grid or moved:
        raise InputError(f"{src}: the series does not read as the image that was segmented (mask {labels.shape}, "
                         f"series {grid}{', placed elsewhere in space' if labels.shape == grid else ''}): no DICOM "
                         f"SEG written. {redo}")


def _charset(source, texts: list[str]):
    """The SEG's SpecificCharacterSet: the source's when our text (class names, description) fits in it, else UTF-8
    (ISO_IR 192; a class named 'Ödem' or '肿瘤' on a series without one was written as '??')."""
    from pydicom.charset import python_encoding

    if all(t.isascii() for t in texts):
        return source or None
    names = [source] if isinstance(source, str) else [str(n) for n in source or []]
    if len(names) == 1 and (codec := python_encoding.get(names[0])):
        try:
            "".join(texts).encode(codec)
            return source
        except UnicodeEncodeError:
            pass
    return "ISO_IR 192"


def write_dicom_seg(path: str | Path, src: str | Path, labels: np.ndarray, classes: Sequence[str], algorithm: str,
                    version: str, affine: np.ndarray | None = None, software: str = "",
                    algorithm_type: str = "AUTOMATIC",
                    description: str | Callable[[list[Frame | None]], str] | None = None,
                    redo: str = "Changed while predicting? Run the case again.",
                    reviewed: Sequence[int] | None = None,
                    weights_sha256: str | None = None) -> tuple[bool, str | None]:
    """Write ``labels`` (the mask on the grid of the DICOM series ``src``, read as :func:`.dicom.read_dicom_series`
    reads it, whose ``affine`` it had) as a DICOM SEG at ``path``, atomically. ``classes``: the class names (value v
    is ``classes[v]``, 0 the background); ``algorithm``/``version``: the model's name and version.
    ``algorithm_type``: AUTOMATIC (the model's own mask), SEMIAUTOMATIC (a model's mask a person corrected) or
    MANUAL (drawn by a person: ``algorithm`` may be empty, no algorithm is named); ``description``: the
    SeriesDescription (at most 64 characters; by default 'attnseg <algorithm>'), or a function of the series' slices
    (:func:`source_slices`' frames) that gives it (Save mask names the reviewed slices by their images' InstanceNumbers,
    :func:`reviewed_numbers`, known once the series is read); ``redo``: what to do when the
    series no longer reads as the mask's grid (said in the error); ``reviewed``: the slices (of ``labels``) a person
    marked reviewed, and ``weights_sha256`` the model's weights digest, kept in the private block (see the module
    docstring).

    Images without a position in space (no FrameOfReferenceUID, ImagePositionPatient or ImageOrientationPatient: a
    radiograph, a secondary capture, a multi-frame picture) get a SEG without a Frame of Reference, as PS3.3 A.51.5.1
    allows: each frame is its source image's (frame's) pixels, named in its Derivation Image Sequence, with no plane
    position; its dimensions are the segment number and, for several source frames, the slice (FrameLabel).

    Returns whether it was written and a warning for the record, or None: why none was written (no foreground: a SEG
    holds at least one frame), or what of the mask it leaves out (voxels on slices the reader inserted where the
    series misses images)."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.pixels import pack_bits
    from pydicom.sequence import Sequence as Seq
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from .._files import atomic_write

    if algorithm_type not in ALGORITHM_TYPES:
        raise ValueError(f"algorithm_type {algorithm_type!r}: one of {', '.join(ALGORITHM_TYPES)}")
    path, src = Path(path), Path(src)
    slices, grid_affine = source_slices(src)
    labels = np.asarray(labels)
    if labels.ndim == 2 and len(slices) == 1:  # one slice: read as a 2D image
        labels = labels[None]
    _check_grid(src, labels, slices, grid_affine, affine, redo)
    if callable(description):
        description = description(slices)
    present = [f for f in slices if f is not None]
    first = present[0]
    header = first.header
    # a SEG is placed in the source's frame of reference (PS3.3 A.51.5.1), or, where the images have no position in
    # space (a radiograph, a secondary capture), pixel for pixel on the images it derives from: no Frame of Reference,
    # no plane positions, each frame naming its source image (and frame) in its Derivation Image Sequence
    placed = all(f.position is not None and f.orientation is not None for f in present) \
        and bool(header.get("FrameOfReferenceUID"))
    n_classes = max(len(classes), int(labels.max(initial=0)) + 1)
    names = [str(classes[v]) if v < len(classes) else f"class {v}" for v in range(n_classes)]
    fg = [(v, k) for v in range(1, n_classes) for k, f in enumerate(slices)
          if f is not None and np.any(labels[k] == v)]
    notes = []
    lost = sum(int(np.count_nonzero(labels[k])) for k, f in enumerate(slices) if f is None)
    if lost:
        notes.append(f"{lost} mask voxel(s) on the slice(s) inserted where the series misses images have no source "
                     "image and are left out of the DICOM SEG")
    if not fg:
        return False, f"no DICOM SEG written: the mask of {src.name} holds no foreground (a DICOM SEG needs at least one frame)"

    now = datetime.datetime.now()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SEG_SOP_CLASS, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    texts = [str(c) for c in classes] + [str(t or "") for t in (description, algorithm, version, software)]
    if charset := _charset(header.get("SpecificCharacterSet"), texts):
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID, ds.SOPInstanceUID = SEG_SOP_CLASS, meta.MediaStorageSOPInstanceUID
    for keyword in PATIENT_STUDY:
        if keyword in header:
            ds[keyword] = header[keyword]
        elif keyword in TYPE2:
            setattr(ds, keyword, "")
    ds.Modality, ds.SeriesInstanceUID = "SEG", generate_uid()
    number = header.get("SeriesNumber")
    ds.SeriesNumber = (int(number) if str(number or "").strip().lstrip("-").isdigit() else 0) + 1000
    ds.SeriesDescription = _lo(description or f"attnseg {algorithm or 'manual'}")
    if placed:
        ds.FrameOfReferenceUID = header.FrameOfReferenceUID
        ds.PositionReferenceIndicator = header.get("PositionReferenceIndicator") or ""
    ds.Manufacturer, ds.ManufacturerModelName = MANUFACTURER, _lo(algorithm or MANUFACTURER)
    ds.DeviceSerialNumber, ds.SoftwareVersions = _lo(version) or "unknown", _lo(software or version) or "unknown"
    ds.InstanceNumber, ds.ImageType = 1, ["DERIVED", "PRIMARY"]
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.SeriesDate, ds.SeriesTime = ds.ContentDate, ds.ContentTime
    ds.ContentLabel, ds.ContentCreatorName = "ATTNSEG", ""
    ds.ContentDescription = _lo(f"{algorithm} {version}" if algorithm_type != "MANUAL" else "drawn by hand")
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.LossyImageCompression = 1, 1, 0, "00"
    ds.Rows, ds.Columns = first.shape
    ds.SegmentationType = "BINARY"
    ds.SegmentSequence = Seq([_segment(v, names[v], algorithm, version, algorithm_type) for v in range(1, n_classes)])

    # what the SEG is made from: the series' instances (one item per file), in slice order
    instances: dict[str, Any] = {}
    for f in present:
        instances.setdefault(str(f.header.SOPInstanceUID), f.header)
    ds.ReferencedSeriesSequence = Seq([_item(SeriesInstanceUID=header.SeriesInstanceUID, ReferencedInstanceSequence=Seq(
        [_item(ReferencedSOPClassUID=h.SOPClassUID, ReferencedSOPInstanceUID=h.SOPInstanceUID)
         for h in instances.values()]))])

    organization = generate_uid()
    ds.DimensionOrganizationSequence = Seq([_item(DimensionOrganizationUID=organization)])
    by_slice = placed or len(present) > 1  # the second dimension: the slice's position, else its source image
    dimensions = [("Segment Number", 0x0062000B, 0x0062000A)] + (
        [("Image Position Patient", 0x00200032, 0x00209113)] if placed else [("Source Image", 0x00209453, 0x00209111)]
        if by_slice else [])
    ds.DimensionIndexSequence = Seq([_item(DimensionOrganizationUID=organization, DimensionIndexPointer=pointer,
                                           FunctionalGroupPointer=group, DimensionDescriptionLabel=label)
                                     for label, pointer, group in dimensions])
    ds.SharedFunctionalGroupsSequence = Seq([_shared(slices, first, grid_affine) if placed else _item()])
    if placed:
        ds.DimensionOrganizationType = "3D"

    used = sorted({k for _, k in fg})
    rank = {k: n for n, k in enumerate(used, start=1)}  # the position index: the slices used, in slice order
    per_frame, packed = [], []
    whole = (first.shape[0] * first.shape[1]) % 8 == 0  # each frame ends on a byte: packed one at a time
    for v, k in fg:
        f = slices[k]
        source = _item(ReferencedSOPClassUID=f.header.SOPClassUID, ReferencedSOPInstanceUID=f.header.SOPInstanceUID,
                       PurposeOfReferenceCodeSequence=Seq([_code("121322", "DCM",
                                                                 "Source image for image processing operation")]))
        source.SpatialLocationsPreserved = "YES"  # (the frame is the source slice's own grid)
        if f.frames_in_file > 1:
            source.ReferencedFrameNumber = f.index + 1
        per_frame.append(_item(
            DerivationImageSequence=Seq([_item(SourceImageSequence=Seq([source]), DerivationCodeSequence=Seq(
                [_code("113076", "DCM", "Segmentation")]))]),
            FrameContentSequence=Seq([_item(DimensionIndexValues=[v, rank[k]] if by_slice else [v])]),
            SegmentIdentificationSequence=Seq([_item(ReferencedSegmentNumber=v)])))
        if placed:
            per_frame[-1].PlanePositionSequence = Seq([_item(ImagePositionPatient=[float(x) for x in f.position])])
        elif by_slice:  # (the slice of the image, in the reader's order, whose source the frame is)
            per_frame[-1].FrameContentSequence[0].FrameLabel = f"slice {k + 1}"
        plane = (labels[k] == v).astype(np.uint8)
        packed.append(pack_bits(plane, pad=False) if whole else plane)
    ds.NumberOfFrames = len(fg)
    ds.PerFrameFunctionalGroupsSequence = Seq(per_frame)
    data = b"".join(packed) if whole else pack_bits(np.stack(packed), pad=False)
    ds.PixelData = data + (b"\0" if len(data) % 2 else b"")
    ds["PixelData"].VR = "OB"
    _mark_reviewed(ds, reviewed, grid_affine, slices, weights_sha256 if algorithm_type != "MANUAL" else None)
    atomic_write(path, lambda tmp: pydicom.dcmwrite(tmp, ds, enforce_file_format=True))
    return True, "; ".join(notes) or None


def _shared(slices: list[Frame | None], first: Frame, affine: np.ndarray):
    """The shared functional groups of a SEG placed in the source's frame of reference: the slices' orientation,
    pixel spacing and thickness."""
    from pydicom.sequence import Sequence as Seq

    dz = float(np.linalg.norm(affine[:3, 2])) if len(slices) > 1 else float(first.thickness or 1.0)
    spacing = first.pixel_spacing or (1.0, 1.0)
    measures = _item(PixelSpacing=[float(spacing[0]), float(spacing[1])], SliceThickness=float(first.thickness or dz))
    if len(slices) > 1:
        measures.SpacingBetweenSlices = round(dz, 6)
    return _item(PlaneOrientationSequence=Seq([_item(ImageOrientationPatient=[float(v) for v in first.orientation])]),
                 PixelMeasuresSequence=Seq([measures]))


def _mark_reviewed(ds: Any, reviewed: Sequence[int] | None, affine: np.ndarray, slices: list[Frame | None],
                   sha: str | None) -> None:
    """The reviewed slices in the SEG's private block: each one's first-pixel position (its source image's, else the
    grid's: a slice inserted where the series misses one) and its number in the series' reading order; the model's
    weights digest."""
    from .dicom_geometry import LPS_TO_RAS

    marks = sorted({int(z) for z in reviewed or () if 0 <= int(z) < len(slices)})
    if sha:
        ds.private_block(REVIEWED_GROUP, MANUFACTURER, create=True).add_new(0x03, "LO", str(sha)[:64])
    if not marks:
        return
    positions = []
    for k in marks:
        f = slices[k]
        pos = f.position if f is not None and f.position is not None else (LPS_TO_RAS @ affine @ [0, 0, k, 1])[:3]
        positions += [f"{float(v):.4f}" for v in pos]
    block = ds.private_block(REVIEWED_GROUP, MANUFACTURER, create=True)
    block.add_new(0x01, "DS", positions)
    block.add_new(0x02, "IS", [str(k) for k in marks])
