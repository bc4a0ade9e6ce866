"""Which way a volume's array axes run in the body, and exact re-orientation between two storages.

Orientation codes are nibabel's letters for the direction an axis *increases* towards (R/L, A/P,
S/I), given here for the project's array axes (z, y, x) = the file's (k, j, i). A volume stored
sagittally and the same volume stored axially hold the same voxels with their axes permuted (and
perhaps flipped): :class:`Reorientation` moves arrays between the two without resampling, so a model
trained on one storage sees what it was trained on, and its results go back voxel for voxel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_PAIRS = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}


def axis_codes(affine: np.ndarray | None, ndim: int = 3) -> tuple[str, ...] | None:
    """The orientation codes of the array axes (z, y, x) of a volume with this NIfTI-style affine
    (None without an affine or for 2D images). An oblique affine gets the closest axes."""
    if affine is None or ndim != 3:
        return None
    import nibabel as nib

    a = np.asarray(affine, float)
    if a.shape != (4, 4) or np.array_equal(a, np.eye(4)):
        return None
    codes = nib.aff2axcodes(a)
    if any(c is None for c in codes):
        return None
    return tuple(str(c) for c in reversed(codes))


def placed_affine(affine, nifti: dict | None) -> np.ndarray | None:
    """The affine a file really places itself with, or None: none, the identity, or a NIfTI whose qform
    and sform codes are both 0 (``nifti``: the reader's header facts, ``Volume.meta["nifti"]``)."""
    if affine is None or (nifti and not nifti.get("qform_code") and not nifti.get("sform_code")):
        return None
    a = np.asarray(affine, float)
    return None if a.shape != (4, 4) or np.array_equal(a, np.eye(4)) else a


def volume_codes(volume) -> tuple[str, ...] | None:
    """:func:`axis_codes` of a :class:`~napari_attnseg.data.Volume` whose file carries real geometry
    (not a NIfTI with both codes 0, not a TIFF)."""
    return axis_codes(placed_affine(volume.affine, volume.meta.get("nifti")), np.ndim(volume.data))


def metadata_codes(meta: dict, ndim: int) -> tuple[str, ...] | None:
    """:func:`axis_codes` from the geometry a reader put in a layer's metadata (``affine``, ``nifti``)."""
    return axis_codes(placed_affine(meta.get("affine"), meta.get("nifti")), ndim)


def check_codes(codes: Sequence[str] | None, what: str) -> tuple[str, ...] | None:
    """``codes`` as a tuple of three letters, one per anatomical axis; raise ValueError otherwise."""
    if codes is None:
        return None
    out = tuple(str(c).upper() for c in codes)
    if len(out) != 3 or any(c not in _PAIRS for c in out) or len({frozenset((c, _PAIRS[c])) for c in out}) != 3:
        raise ValueError(f"{what} must be three orientation letters, one of R/L, A/P and S/I each "
                         f"(e.g. ('S', 'A', 'R')); got {codes!r}.")
    return out


@dataclass(frozen=True)
class Reorientation:
    """Array axis ``i`` of the moved array is axis ``perm[i]`` of the stored one, reversed where
    ``flip[i]``. ``apply`` and ``undo`` take arrays whose last three axes are the spatial ones."""

    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]
    source: tuple[str, ...]
    target: tuple[str, ...]

    def apply(self, a):
        lead = np.ndim(a) - 3
        moved = np.transpose(a, tuple(range(lead)) + tuple(lead + p for p in self.perm))
        axes = tuple(lead + i for i, f in enumerate(self.flip) if f)
        return np.ascontiguousarray(np.flip(moved, axes) if axes else moved)

    def undo(self, a):
        lead = np.ndim(a) - 3
        axes = tuple(lead + i for i, f in enumerate(self.flip) if f)
        a = np.flip(a, axes) if axes else a
        inverse = tuple(int(i) for i in np.argsort(self.perm))
        return np.ascontiguousarray(np.transpose(a, tuple(range(lead)) + tuple(lead + p for p in inverse)))

    def spacing(self, spacing: Sequence[float] | None) -> tuple[float, ...] | None:
        return None if spacing is None else tuple(float(spacing[p]) for p in self.perm)

    def undo_map(self, data: np.ndarray, scale: Sequence[float], translate: Sequence[float],
                 moved_shape: Sequence[int]) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...]]:
        """A coarse map placed on the moved image (pixel ``i`` centred on ``translate + i * scale``)
        back on the stored image: the map's data, scale and translate."""
        scale, translate = list(map(float, scale)), list(map(float, translate))
        for i, f in enumerate(self.flip):
            if f:  # u' = N - 1 - u on the image; the map's index runs backwards
                translate[i] = moved_shape[i] - 1 - translate[i] - (data.shape[-3 + i] - 1) * scale[i]
        inverse = [int(i) for i in np.argsort(self.perm)]
        return (self.undo(data), tuple(scale[p] for p in inverse), tuple(translate[p] for p in inverse))

    def describe(self) -> str:
        """The turn in the file's axis order (x, y, z), as nibabel's ``aff2axcodes`` and the napari reader's
        notes give it (e.g. "AIR -> RAS" for a sagittal file turned axial); the codes here are kept in the
        array's (z, y, x) order."""
        return f"{''.join(reversed(self.source))} -> {''.join(reversed(self.target))}"


def reorientation(source: Sequence[str] | None, target: Sequence[str] | None) -> Reorientation | None:
    """How to move an array stored with axis codes ``source`` to ``target`` (None: nothing to do, or
    either is unknown)."""
    if source is None or target is None:
        return None
    source, target = check_codes(source, "the image's orientation"), check_codes(target, "the model's orientation")
    if source == target:
        return None
    perm, flip = [], []
    for t in target:
        i = next(i for i, s in enumerate(source) if s in (t, _PAIRS[t]))
        perm.append(i)
        flip.append(source[i] != t)
    return Reorientation(tuple(perm), tuple(flip), source, target)


def onto_grid(volume, affine: np.ndarray, shape: Sequence[int]):
    """``volume`` (3D, read by ``read_image``) stored again in the orientation of the grid ``affine`` /
    ``shape`` (array axes), when it is that grid stored with permuted or flipped axes: the same voxels
    moved, with the affine and the header facts updated, and ``meta["reoriented_from"]`` set. None when
    the two are not one grid stored two ways (or either has no geometry, or they already agree)."""
    import nibabel as nib
    from nibabel import orientations as ornt

    from .volume import Volume

    if volume.affine is None or np.ndim(volume.data) != 3 or affine is None or len(shape) != 3:
        return None
    own, other = np.asarray(volume.affine, float), np.asarray(affine, float)
    if other.shape != (4, 4) or nib.aff2axcodes(own) == nib.aff2axcodes(other):
        return None
    stored = np.asarray(volume.data).transpose(2, 1, 0)  # back to the file's (i, j, k)
    transform = ornt.ornt_transform(nib.io_orientation(own), nib.io_orientation(other))
    moved = ornt.apply_orientation(stored, transform)
    index_change = ornt.inv_ornt_aff(transform, stored.shape)  # new (i, j, k) -> stored (i, j, k)
    new_affine = own @ index_change
    tol = 1e-3 * float(np.min(np.linalg.norm(other[:3, :3], axis=0)))
    if moved.shape[::-1] != tuple(shape) or not np.allclose(new_affine, other, atol=max(tol, 1e-6)):
        return None
    meta = dict(volume.meta)
    nifti = dict(meta.get("nifti") or {})
    nifti["stored_shape"] = list(moved.shape)
    if nifti.get("qform"):  # the same voxels: the file's own qform (which may differ from its sform) moved alike
        nifti["qform"] = (np.asarray(nifti["qform"], float) @ index_change).tolist()
    meta["nifti"] = nifti
    meta["reoriented_from"] = "".join(nib.aff2axcodes(own))
    if meta.pop("reviewed_slices", None) is not None:  # slice numbers of the other storage: no longer valid
        meta["reviewed_slices_dropped"] = True
    spacing = tuple(float(z) for z in np.linalg.norm(new_affine[:3, :3], axis=0)[::-1])
    return Volume(np.ascontiguousarray(moved.transpose(2, 1, 0)), spacing, new_affine, meta)


def world_translate(affine: np.ndarray | None, ndim: int = 3) -> tuple[float, ...] | None:
    """Where voxel 0 lies along each array axis's own direction, in mm (the origin projected on the axis):
    a napari ``translate`` that lays volumes of one patient stored alike (the same direction cosines, other
    fields of view: a slab, a crop, another series) over each other. None without real 3D geometry."""
    if affine is None or ndim != 3:
        return None
    a = np.asarray(affine, float)
    if a.shape != (4, 4) or np.array_equal(a, np.eye(4)):
        return None
    out = []
    for column in (2, 1, 0):  # array axes (z, y, x) are the file's (k, j, i)
        direction = a[:3, column]
        norm = float(np.linalg.norm(direction))
        out.append(float(a[:3, 3] @ direction / norm) if norm else 0.0)
    return tuple(out)


def volume_translate(volume) -> tuple[float, ...] | None:
    """:func:`world_translate` of a volume whose file places itself in space (not a NIfTI with both codes 0); of a
    2D NIfTI / MetaImage / NRRD by the same convention (its origin projected on its column and row directions;
    its affine is 4 x 4, the third column the plane's normal), so a 2D crop lies on the full image."""
    placed = placed_affine(volume.affine, volume.meta.get("nifti"))
    if np.ndim(volume.data) == 2:
        out = world_translate(placed, 3)
        return None if out is None else out[1:]  # (the normal's projection is no array axis of the image)
    return world_translate(placed, np.ndim(volume.data))
