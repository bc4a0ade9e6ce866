"""The Correct panel's live edit statistics (voxels added and removed, Dice against the prediction), kept up to
date from the mask's own undo history as strokes, helpers, undo and redo change it. :class:`LiveStats` is a mixin
of the Correct panel."""

from __future__ import annotations

import numpy as np

from .. import correct
from ..data.manifest import ignore_value_of
from ..edit_counts import _counts as _value_counts
from ..measure import class_sizes
from ._common import error_message
from .job_pool import thread_worker

BACKGROUND_VOXELS = 4_000_000  # helpers and edit counts on larger whole volumes run in a worker
BASELINE_KEY = "attnseg_stats_baseline"  # (the run's prediction, it with the slices a re-run carried over)


def stats_reference(layer, prediction):
    """What the edit statistics of ``layer`` count edits against: ``prediction``, except on the slices a re-run
    carried over from the mask it kept (:func:`~.round_state.carry_reviewed`): they hold the clinician's earlier
    labels, which are no edit of this round (they were counted as if the clinician had just redrawn them)."""
    kept = (getattr(layer, "metadata", None) or {}).get(BASELINE_KEY)
    if kept is not None and kept[0] is prediction:  # (a later run in place brings a new prediction: not its)
        return kept[1]
    return prediction


def mask_ignore(layer) -> int | None:
    """The 'ignore' value (slices nobody reviewed) of a mask reopened from a label file an export wrote: the layer's
    ``metadata['ignore_value']`` (that file saved again with File > Save carries it), else its dataset's manifest;
    None for any other mask. It is no class: not listed for the helpers, not counted."""
    metadata = getattr(layer, "metadata", None) or {}
    if metadata.get("ignore_value") is not None:
        return int(metadata["ignore_value"])
    return ignore_value_of(metadata["source_path"]) if metadata.get("source_path") else None


def _history(layer):
    """The tops of a Labels layer's undo and redo queues (napari emits no paint event on undo or redo, only the
    refresh that every slider move emits too: a change of these tells the two apart). None: not napari's."""
    undo, redo = getattr(layer, "_undo_history", None), getattr(layer, "_redo_history", None)
    if undo is None or redo is None:
        return None
    return len(undo), (undo[-1] if undo else None), len(redo), (redo[-1] if redo else None)


def _count_atom(counts: correct.EditCounts, atom, undoing: bool = False) -> None:
    """Update ``counts`` with one napari history atom: a mask-based edit (brush, fill, polygon) or the
    ``(indices, before, after)`` of ``data_setitem``; ``undoing``: the atom was reverted."""
    if hasattr(atom, "slice_key"):
        key = tuple(atom.slice_key)
        index = key if atom.mask is None else tuple(i + (s.start or 0) for i, s in zip(np.nonzero(atom.mask), key))
        old, new = atom.old_values, atom.new_value
    else:
        index, old, new = atom
    counts.update(index, *((new, old) if undoing else (old, new)))


class LiveStats:
    """The Correct panel's edit statistics of the watched mask, kept up to date from its paint events (and its
    undo and redo) in what each edit changed; counted over the whole volume only when the mask, its data or its
    prediction is replaced, in a worker for a big volume (the count is dropped if the mask changed meanwhile).
    Needs the panel's ``_watched``, ``_schedule_stats()``, ``_update_info()`` and ``stats_label``."""

    _counts = _counts_key = _undo_tops = _counting = None  # (EditCounts, (mask, prediction) counted, undo tops, worker)
    _version = 0  # bumped at every change of the watched mask's voxels

    def _watch(self, layer, on: bool) -> None:
        self._counts = self._counts_key = self._undo_tops = None  # (they held a closed case's mask and prediction)
        for name, slot in (("paint", self._painted), ("set_data", self._refreshed), ("data", self._replaced),
                           ("labels_update", self._touched)):
            ev = getattr(layer.events, name, None)
            if ev is not None:
                (ev.connect if on else ev.disconnect)(slot)

    def _touched(self, *_) -> None:
        self._version += 1  # (a brush stroke writes before its paint event; a count running meanwhile is stale)

    def _replaced(self, *_) -> None:
        self._version += 1
        self._counts = None
        self._schedule_stats()

    def _painted(self, event=None) -> None:
        self._version += 1
        if self._counts is not None:
            for atom in getattr(event, "value", None) or []:
                _count_atom(self._counts, atom)
            self._undo_tops = _history(self._watched)
        self._schedule_stats()

    def _refreshed(self, *_) -> None:
        """A refresh of the mask: an undo or a redo when its history changed (the view moved otherwise)."""
        now, before = _history(self._watched), self._undo_tops
        if now is None or (before is not None and now[0] == before[0] and now[2] == before[2]
                           and now[1] is before[1] and now[3] is before[3]):
            return
        self._version += 1
        self._undo_tops = now
        if self._counts is not None and before is not None and now[0] == before[0] - 1 and now[2] == before[2] + 1:
            for atom in now[3]:  # undone, in the order napari reverted them
                _count_atom(self._counts, atom, undoing=True)
        elif self._counts is not None and before is not None and now[0] == before[0] + 1 and now[2] == before[2] - 1:
            for atom in now[1]:  # redone
                _count_atom(self._counts, atom)
        else:
            self._counts = None
        self._schedule_stats()

    def _edit_stats(self, layer, prediction) -> dict | None:
        """The edit statistics of ``layer`` now; None while they are counted in a worker."""
        prediction = stats_reference(layer, prediction)
        key = self._counts_key or (None, None)
        if self._counts is not None and key[0] is layer is self._watched and key[1] is prediction:
            return self._counts.stats()
        self._counts = None
        data = np.asarray(layer.data)
        if data.size <= BACKGROUND_VOXELS or layer is not self._watched:
            counts = correct.EditCounts(prediction, data, ignore=mask_ignore(layer))
            if layer is self._watched:
                self._counts, self._counts_key, self._undo_tops = counts, (layer, prediction), _history(layer)
            return counts.stats()
        if self._counting is None:
            self._count_in_background(layer, prediction, data)
        return None

    def _count_in_background(self, layer, prediction, data) -> None:
        version, ignore = self._version, mask_ignore(layer)

        @thread_worker(start_thread=False, ignore_errors=True)
        def work():
            return correct.EditCounts(prediction, data, ignore=ignore)

        def done(counts):
            self._counting = None
            same = self._watched is layer and \
                stats_reference(layer, layer.metadata.get("attnseg_prediction")) is prediction
            if same and self._version == version:  # nothing was written meanwhile: the count holds
                self._counts, self._counts_key, self._undo_tops = counts, (layer, prediction), _history(layer)
            try:
                self._update_info()  # (counts again when something was written, or another mask is chosen)
            except RuntimeError:  # the panel was closed meanwhile
                pass

        def failed(exc):
            self._counting = None
            self.stats_label.value = f"Edits vs prediction: could not be counted ({error_message(exc)})"

        self._counting = worker = work()
        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.start()

    def _mask_sizes(self, layer) -> str:
        """'Mask: tumour 12.4 mL (8,312 voxels)', from the live counts (:mod:`..measure`); '' without them."""
        if self._counts is not None and layer is self._watched:
            counts = self._counts.class_voxels()
        elif layer.metadata.get("attnseg_prediction") is None and layer.data.size <= BACKGROUND_VOXELS:
            counts = _value_counts(np.asarray(layer.data))  # (a mask with no prediction to count edits against)
            counts.pop(mask_ignore(layer), None)
        else:
            return ""
        scale, units = list(getattr(layer, "scale", ())), [str(u) for u in getattr(layer, "units", ())]
        frames = 1
        if (len(scale) == 3 and self._time_lapse(layer)) or len(scale) == 4:  # (a frame's area or volume, averaged
            scale, units, frames = scale[1:], units[1:], layer.data.shape[0]  # over the frames: (t, y, x), (t, z, y, x))
        text = class_sizes(counts, scale, units[-1] if units else None,
                           self._class_names or None, frames=frames)
        return f"Mask: {text or 'empty'}"
