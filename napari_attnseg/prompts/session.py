"""One object corrected by clicks: the clicks in order and the object's mask after each run.

What the napari prompt mode keeps between clicks (and what the robot clicker does): the next run's
``previous`` is the object's mask after the last run, not its state before the first click, so a
correction click refines the newest mask and its change is written against it. Each run also keeps
the edit it made to the labels (voxels, values before, values written), so undoing a click reverts
exactly that edit and leaves any other change (a brush stroke made since) alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class PromptState:
    """The object after one run: how many clicks it used, its mask, and the edit written to the labels. A 2D
    model's run on slice ``z`` of a volume keeps that slice's mask only (the other slices are as before it):
    a whole-volume copy per click was 12.6 MB on a 48x512x512 CT, kept for every click."""

    clicks: int
    mask: np.ndarray
    where: tuple[np.ndarray, ...] | None = None
    before: np.ndarray | None = None
    after: np.ndarray | None = None
    z: int | None = None
    shape: tuple[int, ...] | None = None  # the volume's, with z


@dataclass
class PromptSession:
    """Clicks on one object and its mask after each run.

    Attributes:
        initial: the object's mask before the first click (an existing object being corrected), or None.
        clicks: ``(point, label)`` in order, newest last (label 1 positive, 0 negative).
        states: one :class:`PromptState` per run that changed the labels, oldest first.
    """

    initial: np.ndarray | None = None
    clicks: list[tuple[tuple[float, ...], int]] = field(default_factory=list)
    states: list[PromptState] = field(default_factory=list)

    @property
    def current(self) -> np.ndarray | None:
        """The object's mask now: after the newest applied run, else ``initial`` (after 2D runs on slices of a
        volume, a whole volume is built: :meth:`current_plane` reads one slice)."""
        if not self.states or self.states[-1].z is None:
            return self.states[-1].mask if self.states else self.initial
        base, planes = self._planes()
        shape = self.states[-1].shape
        out = np.zeros(shape, bool) if base is None else np.array(base, bool)
        for z, plane in planes.items():
            out[z] = plane
        return out

    def _planes(self) -> tuple[np.ndarray | None, dict[int, np.ndarray]]:
        """The newest whole mask (a run's on the whole image, else ``initial``) and the newest 2D run's mask of
        each slice run since."""
        planes: dict[int, np.ndarray] = {}
        for state in reversed(self.states):
            if state.z is None:
                return state.mask, planes
            planes.setdefault(state.z, state.mask)
        return self.initial, planes

    def current_plane(self, z: int) -> np.ndarray | None:
        """``current[z]`` without building the volume (None: no mask yet, as ``current``)."""
        base, planes = self._planes()
        if z in planes:
            return planes[z]
        if base is not None:
            return base[z]
        return np.zeros(next(iter(planes.values())).shape, bool) if planes else None

    @property
    def done(self) -> int:
        """How many clicks the newest applied run used (0 before any)."""
        return self.states[-1].clicks if self.states else 0

    @property
    def points(self) -> np.ndarray:
        return np.array([p for p, _ in self.clicks], float)

    @property
    def labels(self) -> np.ndarray:
        return np.array([lab for _, lab in self.clicks], int)

    def add(self, point, positive: bool = True) -> None:
        self.clicks.append((tuple(float(c) for c in point), 1 if positive else 0))

    def record(self, mask: np.ndarray, clicks: int | None = None, edit=None, labels: np.ndarray | None = None,
               z: int | None = None, shape: tuple[int, ...] | None = None) -> None:
        """The object's mask after a run that used the first ``clicks`` clicks (default: all). ``edit``:
        ``(where, values)`` written to ``labels`` (the array before the write), kept for :meth:`undo`. ``z``: a
        2D model's run on slice ``z`` of a volume (of ``shape``, default the labels'), ``mask`` that slice's."""
        state = PromptState(len(self.clicks) if clicks is None else int(clicks), np.asarray(mask, bool))
        if z is not None:
            state.z, state.shape = int(z), tuple(np.shape(labels) if shape is None else shape)
            if len(state.shape) != state.mask.ndim + 1:
                raise ValueError(f"A run on slice {z} of a volume of shape {state.shape} records a slice's mask; "
                                 f"got shape {state.mask.shape}.")
        if edit is not None and labels is not None:
            state.where = tuple(np.asarray(w) for w in edit[0])
            state.before = np.asarray(labels)[state.where].copy()
            state.after = np.asarray(edit[1]).copy()
        self.states.append(state)

    def owned(self, shape: tuple[int, ...]) -> np.ndarray:
        """The object's own voxels: its mask before the first click and every voxel its runs wrote. A run
        removes only these (a neighbour of the same class that the model's mask overlapped is not)."""
        out = np.zeros(shape, bool) if self.initial is None else np.asarray(self.initial, bool).copy()
        for state in self.states:
            if state.where is not None:
                out[tuple(w[state.after != 0] for w in state.where)] = True
        return out

    def removable(self, shape: tuple[int, ...], z: int | None = None) -> np.ndarray:
        """The voxels the next run may take away: the object's own (:meth:`owned`), and none on an existing
        object's first run (in a one-class mask the object under the click can hold a touching neighbour,
        which is not the model's to delete). ``z``: a 2D model's run on that slice of a volume, whose first run
        there is a first run too (:meth:`ran_on`)."""
        if self.initial is not None and not self.ran_on(z):
            return np.zeros(shape, bool)
        return self.owned(shape)

    def ran_on(self, z: int | None = None) -> bool:
        """Whether a run of this object already changed slice ``z`` (None: any run at all). A 2D model on a volume
        starts each slice afresh: with the first click on a slice of a big existing object (a Segment run's tissue
        region across the CT), its second slice's run removed the whole region on that slice (102,439 voxels on
        lung1), where the first slice's had kept it."""
        return any(z is None or s.z is None or s.z == int(z) for s in self.states)

    def next_slice_run(self) -> tuple[int, int]:
        """A 2D model on a volume runs one slice at a time: ``(slice, clicks)`` of the next run, the slice of the
        oldest click no run has used and how many clicks (in order) that run uses (the following ones on the
        same slice too; clicks on another slice wait for a later run). Clicks are (z, y, x)."""
        start = min(self.done, len(self.clicks) - 1)
        z = int(round(self.clicks[start][0][0]))
        used = start + 1
        while used < len(self.clicks) and int(round(self.clicks[used][0][0])) == z:
            used += 1
        return z, used

    def undo(self) -> list[PromptState]:
        """Remove the newest click; returns the runs that used it, newest first: their edits are to be
        reverted (:func:`revert`), and ``current`` is then the mask before them."""
        if not self.clicks:
            return []
        self.clicks.pop()
        dropped = []
        while self.states and self.states[-1].clicks > len(self.clicks):
            dropped.append(self.states.pop())
        return dropped


    def drop_reverted(self, labels: np.ndarray) -> int:
        """Remove the newest runs whose edit is no longer in ``labels`` (napari's Ctrl+Z on the mask layer
        restored every voxel they changed) with their clicks, as :meth:`undo` would; returns how many clicks
        were removed. Without this, the next click would refine a mask the user had undone and write the
        undone voxels back."""
        n = len(self.clicks)
        for _ in range(self.reverted_runs(labels)):
            self.states.pop()
            del self.clicks[self.states[-1].clicks if self.states else 0:]
        return n - len(self.clicks)

    def reverted_runs(self, labels: np.ndarray) -> int:
        """How many of the newest runs napari's Ctrl+Z on the mask undid: the most runs, newest first, such that
        every voxel they wrote holds again the value it had before the oldest of them that wrote it (runs that changed
        nothing count only when an older one matches too). Each run compared with its own values before it missed
        two Ctrl+Z: the newest run's voxels, changed by the older run too, held neither its values nor its before."""
        labels = np.asarray(labels)
        flat_labels = labels.reshape(-1)
        where = np.zeros(0, np.int64)  # the voxels these runs wrote, sorted, and the value each expects: its value
        expect = np.zeros(0, flat_labels.dtype)  # before the oldest of them that wrote it (as every click asks)
        best = 0
        for k, state in enumerate(reversed(self.states), 1):
            if state.where is None:
                break
            if not len(state.where[0]) or not np.any(state.after != state.before):
                continue
            flat = np.ravel_multi_index(tuple(np.asarray(w, np.int64) for w in state.where), labels.shape)
            # this older run's values come first, so np.unique's first occurrence keeps them (older wins)
            where, first = np.unique(np.concatenate([flat, where]), return_index=True)
            expect = np.concatenate([np.asarray(state.before, flat_labels.dtype), expect])[first]
            if np.array_equal(flat_labels[where], expect):
                best = k
        return best


def revert(labels: np.ndarray, state: PromptState) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The edit that undoes ``state``'s on ``labels``: ``(where, values)`` restoring the values from before
    the run, on the voxels that still hold what it wrote (a voxel painted over since keeps its paint)."""
    if state.where is None:
        return tuple(np.zeros(0, int) for _ in range(np.ndim(labels))), np.zeros(0, np.asarray(labels).dtype)
    keep = np.asarray(labels)[state.where] == state.after
    return tuple(w[keep] for w in state.where), state.before[keep]


def component_at(labels: np.ndarray, point: Sequence[float], reach: int = 32) -> np.ndarray | None:
    """The face-connected object under ``point`` as a bool mask of the labels' shape (None on background;
    :func:`~napari_attnseg.prompts.segment.object_at`), labelled in a box around the point that grows until the
    object lies inside it: a click on a small object of a 48x512x512 CT costs the object, not the volume."""
    from scipy import ndimage as ndi

    from ..errors import InputError
    from .segment import cut_by_box

    labels = np.asarray(labels)
    idx = tuple(int(round(float(c))) for c in point)
    if len(idx) != labels.ndim or any(not 0 <= i < s for i, s in zip(idx, labels.shape)):
        raise InputError(f"Point {tuple(point)} is outside the labels of shape {labels.shape}.")
    value = labels[idx]
    if value == 0:
        return None
    while True:
        box = tuple(slice(max(0, i - reach), min(n, i + reach + 1)) for i, n in zip(idx, labels.shape))
        cc, _ = ndi.label(labels[box] == value)
        comp = cc == cc[tuple(i - s.start for i, s in zip(idx, box))]
        if not cut_by_box(comp, box, labels.shape):  # else it may go on outside the box: look wider
            break
        reach *= 2
    out = np.zeros(labels.shape, bool)
    out[box] = comp
    return out
