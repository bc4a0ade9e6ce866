"""Click to fix: what the prompt mode checks around a run, kept out of :mod:`.prompt_mode`.

- :meth:`PromptChecks.fit`: the click model's card against the image, as the Segment tab checks it
  (:func:`napari_attnseg.inference.checks.fit_warning`): a microscopy model on a scan placed in the body
  (a NIfTI / DICOM volume) or a CT says so in the status (audit: nuclei-2d-prompt on a T1 brain MRI was
  accepted without a word).
- :meth:`PromptChecks.diameter`: the objects' size the clicks run at, when the Segment run was given none
  (:mod:`napari_attnseg.prompts.size`), computed once per image layer, in the worker.
- :func:`click_status`: the status after a run, counting the voxels actually written (the audit's
  "261 voxels from 1 click" had written 0).
- :func:`promptable_models`: the click models the mode lists.
"""

from __future__ import annotations

import threading

import numpy as np


def promptable_models(viewer) -> dict[str, tuple[object, int]]:
    """Bundled promptable models and the segment panel's promptable ones (loaded, or checkpoints whose card
    says so, e.g. one the Fine-tune panel just wrote): name -> (entry, spatial dims)."""
    from ..checkpoint import read_card
    from ..models.registry import bundled_models
    from ..prompts import is_promptable
    from ._common import find_docked
    from .segment_widget import SegmentWidget

    found: dict[str, tuple[object, int]] = {
        n: (n, int((card.get("config") or {}).get("spatial_dims", 2)))
        for n, card in bundled_models().items() if (card.get("config") or {}).get("prompts")}
    seg = find_docked(viewer, SegmentWidget)
    if seg is not None:
        for label in seg.model_names():
            entry = seg.model_entry(label)
            if isinstance(entry, str):
                if label in found or not entry.endswith(".safetensors"):
                    continue
                try:
                    card = read_card(entry)
                except Exception:  # an unreadable file: the segment panel reports it when it is used
                    continue
                if card.config.get("prompts"):
                    found[label] = (entry, card.spatial_dims)
            elif is_promptable(entry):
                found.setdefault(label, (entry, int(entry.spatial_dims)))
    return found


def card_of(entry):
    """The card of a prompt model entry (a loaded model, a bundled name or a checkpoint path) without loading
    weights; None when it cannot be read."""
    if not isinstance(entry, str):
        return getattr(entry, "card", None)
    from ..checkpoint import ModelCard
    from .model_choice import card_dict

    found = card_dict(entry)
    return None if found is None else ModelCard.from_dict(found)


class PromptChecks:
    """Per image layer (by its ``unique_id``): the fit warning of each click model and the estimated object size.
    The layers themselves are not held: an image closed with its case was kept in memory with its data by these
    caches (a day's worklist in one session kept every image clicked on; napari hands a plugin a new proxy of the
    same layer at each look-up, so an identity key also missed)."""

    def __init__(self):
        self._fit: dict[tuple[str, str], str | None] = {}
        self._sizes: dict[str, tuple[float | None, str]] = {}
        self._lock = threading.Lock()

    def forget(self, layer) -> None:
        """Drop what is known of ``layer`` (closed)."""
        uid = getattr(layer, "unique_id", None)
        with self._lock:
            self._sizes.pop(uid, None)
            for key in [k for k in self._fit if k[0] == uid]:
                del self._fit[key]

    def fit(self, name: str, entry, layer) -> str | None:
        """Why ``layer`` looks unlike the training data of the click model ``name`` (None: it fits)."""
        key = (layer.unique_id, name)
        if key in self._fit:
            return self._fit[key]
        from ..data.orientation import metadata_codes
        from ..inference.checks import fit_warning
        from ._common import preview_array

        card = card_of(entry)
        try:
            codes = metadata_codes(layer.metadata, 3) if layer.ndim == 3 else None
        except Exception:  # geometry a reader wrote in another form: no orientation, the other checks still run
            codes = None
        # (on a stand-in of at most a few million voxels, as the Segment tab's hint: a zarr slide was sampled whole on
        # the GUI thread when the mode was ticked, 0.4 s for 8000 x 8000 px; a pyramid's data is no array)
        text = None if card is None else fit_warning(card, preview_array(layer), False, codes)
        self._fit[key] = text
        return text

    def diameter(self, card, image_layer, mask_layer, plane: np.ndarray, z: int | None
                 ) -> tuple[float | None, float | None, str]:
        """``(diameter the click runs at, typical diameter here, where it came from)`` in pixels: the mask's
        Segment run (its diameter, or the objects it found), else an estimate kept per image layer (the mask's
        objects, of slice ``z`` for a 2D model on a volume; else the click model's automatic start model run
        once on ``plane``, the image the model sees); an estimate near the card's size is not used
        (:func:`napari_attnseg.prompts.size.to_use`). Runs in the worker."""
        from ..prompts.size import automatic_diameter, to_use, typical_diameter

        trained = getattr(card, "object_diameter", None)
        if not trained:
            return None, None, ""
        params = ((mask_layer.metadata.get("attnseg") or {}).get("params") or {}) if mask_layer is not None else {}
        found = typical_diameter(params, None)
        if found[0] is None:
            with self._lock:  # two quick clicks: the second waits for the first's estimate
                hit = self._sizes.get(image_layer.unique_id)
                if hit is not None:
                    found = hit
                else:
                    labels = None if mask_layer is None else np.asarray(mask_layer.data if z is None else mask_layer.data[z])
                    found = typical_diameter(None, labels)
                    if found[0] is None:
                        found = automatic_diameter(card, plane)
                    self._sizes[image_layer.unique_id] = tuple(found)
        return to_use(found, trained), found[0], found[1]


def click_status(result, report: dict, clicks: int, z, typical: float | None, trained: float | None,
                 source: str, mask=None) -> str:
    """The status after a run: the voxels it wrote (``report``: :func:`napari_attnseg.prompts.size.write_report`),
    clicks the model ignored, the object under the click kept, the object size used, a far too small object.
    ``mask``: the Labels layer written (its class names decide the advice for a region far bigger than the object)."""
    from ..prompts.size import object_note

    added, removed = report["added"], report["removed"]
    changed = f"{added + removed} voxels changed ({added} added, {removed} removed)" if added + removed else "Nothing changed"
    text = f"{changed} from {clicks} click(s) in {result.timings.get('total', 0):.2f} s"
    if result.params.get("honoured_clicks"):  # the model alone left a click's pixel as it was (prompts.segment)
        text += f"; {result.params['honoured_clicks']} click(s) moved the edge along the model's contour"
    where = " on this slice" if z is not None else ""
    if report["big"]:  # not a neighbour: a region of another kind (brain tissue under a nucleus model)
        text += (f"; the model's object ({report['model']} voxels) {'lies inside' if report['inside'] else 'overlaps'}"
                 f" the object under the click ({report['initial']} voxels{where}), far bigger, which was kept as it "
                 "was: this click model segments smaller objects; ")
        names = [str(n) for n in (getattr(mask, "metadata", None) or {}).get("class_names") or []]
        # (label 2 in a one-class mask, e.g. nuclei merged into a clump, was then refused by Export: no class name)
        text += ("erase that region first to replace it, or select a label the mask does not hold (M in its layer "
                 "controls), press New object and click: the object is written over the region" if len(names) > 2 else
                 "if it is several objects merged into one (a clump), erase it (eraser) and click each object in it")
    elif report["kept"]:
        text += (f"; {report['kept']} voxels of the object under the click lie outside the model's object and were "
                 "kept (a touching neighbour?): a negative click does not remove them, erase them if wrong")
    if result.params.get("zoom") and typical:
        text += f"; objects here about {typical:.0f} px ({source}), rescaled for the model's {trained:.0f} px"
    if report["first"] and not report["initial"]:  # a new object's first run
        text += object_note(np.asarray(result.mask)[tuple(result.box)], typical, trained)
    return text
