"""How the segment panel shows a prediction: one layer per turn of the event loop, asking before an
edited mask is replaced. :class:`ResultLayers` is a mixin of the segment panel."""

from __future__ import annotations

import re
import weakref

import numpy as np
from napari.layers import Labels
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QMessageBox

from .. import correct
from ..inference.prediction import AttentionMap
from ..layers import Placement, attention_help, data_hash, heatmap_help, prediction_layers
from ._common import is_deleted, notify_info, notify_warning, placement_of, upsert_layer
from .prompt_view import FOLLOW_KEY, follow
from .round_state import NUMBERED, own_names, say_names_kept
from .suggest_tool import drop_stale_uncertainty

_HOOKED: weakref.WeakSet = weakref.WeakSet()  # heatmap layers whose help follows their display settings


def keep_help(viewer, layer) -> None:
    """Show a heatmap's note (``metadata["attnseg"]["help"]``) as its status-bar help, saying the colour scale it is
    displayed with, and keep it so: contrast limits or a colormap the user sets are said (the note kept saying
    "Colour scale 0-1 (inferno...)"), and napari's own help, which replaced it at a mode change (the transform
    mode, key 2, and back: "use <2> for transform" until the next run), gives way to it again."""
    viewer_ref = weakref.ref(viewer)  # (the layer's events must not keep a closed viewer alive)

    def refresh(event=None) -> None:
        info = layer.metadata.get("attnseg") or {}
        if not info.get("help"):
            return
        shown = viewer_ref()
        note = info["help"] = world_note(layer, info["help"], shown)  # (the image's placement may have changed)
        layer.help = heatmap_help(note, layer.contrast_limits, getattr(layer.colormap, "name", str(layer.colormap)))
        if shown is not None and shown.layers.selection.active is layer:  # (napari refreshes it on a change of layer only)
            shown.help = layer.help

    if layer not in _HOOKED:
        _HOOKED.add(layer)
        for kind in ("contrast_limits", "colormap", "mode", "scale", "units"):  # (scale, units: set by follow)
            if (emitter := getattr(layer.events, kind, None)) is not None:
                emitter.connect(refresh, position="last")  # (after napari's own mode handler, which sets its help)
    refresh()


_SIZE = re.compile(r"one value per .*? image pixels(?: \([^)]*\))?\. ")  # (:func:`attention_help`'s words)
_SAID_UNIT = re.compile(r"\([-+.\de x]+ ([^;)]+)")  # the unit a note's world sizes are said in


def _same_unit(a: str, b: str) -> bool:
    """Whether two unit names are one unit (napari's pint registry: "um" and "micrometer")."""
    if a == b:
        return True
    try:
        from napari.utils._units import get_unit_registry

        registry = get_unit_registry()
        return registry.Unit(a) == registry.Unit(b)
    except Exception:  # (a name pint does not know)
        return False


def world_note(layer, note: str, viewer) -> str:
    """``note`` (:func:`~napari_attnseg.layers.attention_help`) saying the world size of one value on the image's
    placement now: a heatmap that follows its image (:func:`.prompt_view.follow`) kept the pixel size and unit of its
    run in its note ("0.617 x 5.12 x 5.12 mm") after the image's pixel size was set anew. Unchanged when the layer
    follows no image in ``viewer`` or keeps no ``map_scale``."""
    grid = layer.metadata.get(FOLLOW_KEY) or {}
    map_scale = (layer.metadata.get("attnseg") or {}).get("map_scale")
    image = next((ly for ly in viewer.layers if ly.unique_id == grid.get("image")), None) if viewer is not None else None
    if image is None or map_scale is None or len(map_scale) != image.ndim or not _SIZE.search(note):
        return note
    n, units = len(map_scale), placement_of(image).units
    said = _SAID_UNIT.search(_SIZE.search(note).group(0))
    if said and units and len(set(units)) == 1 and _same_unit(said.group(1), units[0]):
        units = (said.group(1),) * n  # (the run's word for it: "um" stays "um", not napari's "micrometer")
    where = Placement(tuple(float(s) for s in image.scale), (0.0,) * n, units=units)
    words = attention_help(AttentionMap("", 0, np.zeros((1,) * n, np.float32), tuple(map_scale), (0.0,) * n),
                           [1.0], 1, "", where)
    return _SIZE.sub(lambda _: _SIZE.search(words).group(0), note, count=1)


class ResultLayers:
    """Needs ``self.viewer``, ``self.confirm_overwrite``, a ``_showing`` flag, ``self.status``, the running job's
    ``_token`` and ``_finish_run(ok)`` (a run whose showing stopped half-way ends with ``ok`` False)."""

    def _ask_overwrite(self, layer_name: str) -> bool:
        """Ask before a run replaces ``layer_name``, a mask edited or marked reviewed, saying what Yes loses: the
        corrections and the reviewed marks, by slice (the marks were dropped with no word in the question)."""
        layer = self.viewer.layers[layer_name] if layer_name in self.viewer.layers else None
        made_here = layer is not None and "attnseg_hash" in layer.metadata  # (else: opened from a file, or drawn)
        reviewed = sorted({int(z) for z in (layer.metadata.get("reviewed_slices") or [])}) if layer is not None else []
        volume = layer is not None and layer.ndim == 3
        # (hashed again only for a mask with marks: without any, it is asked about because it was edited)
        edited = not made_here or not reviewed or layer.metadata["attnseg_hash"] != data_hash(layer.data)
        if not made_here:
            what, lost = "was not made by a run in this session (opened from a file or drawn): it may hold corrections", \
                ["its labels"]
        elif edited:
            what, lost = "was edited since the last run", ["your corrections"]
        else:
            what, lost = "holds the last run's prediction, not edited", []
        if reviewed and volume:
            marks = f"slice{'s' if len(reviewed) > 1 else ''} {correct.format_slice_ranges(reviewed)}"
            what += f", and you marked {marks} reviewed"
            lost.append(f"the reviewed marks of {marks}")
        elif reviewed:  # (a 2D mask: one slice)
            what += ", and you marked it reviewed"
            lost.append("its reviewed mark")
        found = NUMBERED.match(layer_name)
        kept_to = f"{found['base']} ({int(found['n']) + 1})" if found else f"{layer_name} (2)"
        keep = f"No keeps it as it is (hidden) and puts the prediction in {kept_to!r}"
        keep += ", with the slices you reviewed (their labels and marks) copied into it." if volume and reviewed else "."
        answer = QMessageBox.question(
            self, "Overwrite edited mask?" if edited else "Overwrite reviewed mask?",
            f"The mask {layer_name!r} {what}.\n\nYes replaces it with the new prediction: {' and '.join(lost)} will be "
            f"lost.\n{keep}",
        )
        return answer == QMessageBox.Yes

    def _show(self, model, pred, name: str, where, geometry: dict | None = None, then=None,
              layers: list | None = None) -> None:
        """Add or update the result layers, one per turn of the event loop (``layers``: their
        :func:`~napari_attnseg.layers.prediction_layers`, made on the run's worker; None: made here).

        Creating a napari layer costs the GUI thread a few hundred ms on a slow machine (its vispy
        visual); adding them one at a time keeps each stall to one layer instead of all of them.

        The source image removed (``geometry["attnseg_source_uid"]``, else the layer ``name``) or the run cancelled
        meanwhile stops the adding (:meth:`_stop_showing`); ``then`` is called only when every layer was shown.
        """
        pending = list(prediction_layers(model, pred, name, where) if layers is None else layers)
        if getattr(self, "attention_box", None) is not None and self.attention_box.value \
                and not getattr(model, "attention_strides", None):  # (the heatmaps are this panel's point: say so)
            card = getattr(model, "card", None)
            notify_info(f"{getattr(card, 'name', '') or 'This model'} ({getattr(model, 'arch', '?')}) has no attention "
                        f"gates, so {name} gets no attention heatmaps; choose an attention model (Attention U-Net, "
                        "msga, TransFuse, e.g. a bundled one) to see where a model looks.")
        fresh = {kwargs["name"] for _, kwargs, _ in pending}
        source, token = (geometry or {}).get("attnseg_source_uid"), getattr(self, "_token", None)
        for layer in list(self.viewer.layers):  # an earlier run's heatmaps this run has none of: stale, removed
            # (also those of this image named after its former name: renamed, it got a second set, both shown)
            on_source = source is not None and (layer.metadata.get(FOLLOW_KEY) or {}).get("image") == source
            if layer.name in fresh or not (on_source or layer.name.startswith(f"{name} attention ")):
                continue
            if "level" in (layer.metadata.get("attnseg") or {}):
                self.viewer.layers.remove(layer)
            elif on_source and layer.visible and "attnseg_hash" in layer.metadata \
                    and not layer.name.startswith(f"{name} mask"):  # its mask then: kept (corrections?), hidden
                layer.visible = False
        drop_stale_uncertainty(self.viewer, name)  # (N's map of the last run's probabilities)
        self._showing = True
        previous = [None]  # this run's layer shown last
        made: list[tuple[str, str, bool]] = []  # (layer name, kind, added new) of the layers shown so far

        def step():
            if is_deleted(self) or getattr(self.viewer.window, "_qt_window", None) is None:  # the viewer closed
                self._showing = False
                return
            if pending and made and (why := self._stop_reason(name, source, token)):
                self._stop_showing(why, made, then is not None)
                return
            if not pending:
                self._showing = False
                self.viewer.layers.selection.active = self.viewer.layers[name] if name in self.viewer.layers else None
                if then is not None:
                    then()
                return
            data, kwargs, kind = pending.pop(0)
            new = kwargs["name"] not in self.viewer.layers
            layer = self._show_one(data, kwargs, kind, geometry)
            self._follow_source(layer, kwargs, where, source)
            made.append((layer.name, kind, new))
            if new and previous[0] is not None and previous[0] in self.viewer.layers:  # keep the run's order: a
                layers = self.viewer.layers  # level removed by hand came back on top (level2, level4, level3)
                i, j = layers.index(previous[0]), layers.index(layer)
                # the probability and heatmaps go below the mask (at opacity 0.8 a heatmap over it tinted the
                # mask where the model looked, on the object being corrected); the rest after the one before
                at = i if kind != "labels" and isinstance(previous[0], Labels) else i + 1
                if j != at:
                    layers.move(j, at)
            previous[0] = layer
            QTimer.singleShot(15, step)  # let the paint and input events queued meanwhile run first

        step()

    def _follow_source(self, layer, kwargs: dict, where, source) -> None:
        """``layer`` (placed by ``where``, the image's placement when the run started) follows its image's placement
        set later (:func:`.prompt_view.follow`), and takes the one set while the run went."""
        image = next((ly for ly in self.viewer.layers if ly.unique_id == source), None) if source is not None else None
        if image is None or "scale" not in kwargs or len(where.scale) != layer.ndim:
            return
        scale = [float(s) / float(w) for s, w in zip(kwargs["scale"], where.scale)]
        translate = [(float(t) - float(t0)) / float(w) for t, t0, w in zip(kwargs["translate"], where.translate,
                                                                            where.scale)]
        follow(layer, image, scale, translate)
        if (layer.metadata.get("attnseg") or {}).get("help"):  # (its note: the world sizes on the image's placement)
            keep_help(self.viewer, layer)

    def _stop_reason(self, name: str, source, token) -> tuple[str, str] | None:
        """Why the rest of a run's layers must not be added, and what to do (None when they can): its image was
        removed (a heatmap of an image no longer open pairs with nothing), or the run was cancelled (the dock closed)."""
        there = any(ly.unique_id == source for ly in self.viewer.layers) if source is not None else \
            name in self.viewer.layers
        if not there:
            return f"{name} was removed while its results were being added", f"open {name} again and Run"
        if token is not None and token.cancelled:
            return f"The run on {name} was cancelled while its results were being added", f"Run {name} again"
        return None

    def _stop_showing(self, why: tuple[str, str], made: list[tuple[str, str, bool]], end_run: bool) -> None:
        """Stop adding a run's layers half-way: the mask stays (the run's result, possibly already over an earlier
        mask in place, which removing would lose too); the other layers this run added new go (a probability and
        part of the heatmaps are no set to read), and the ones it updated in place stay. Says so in the status."""
        self._showing = False
        kept = [n for n, kind, _ in made if kind == "labels" and n in self.viewer.layers]
        dropped = [n for n, kind, new in made if kind != "labels" and new and n in self.viewer.layers]
        for layer_name in dropped:
            self.viewer.layers.remove(layer_name)
        msg = f"{why[0]}: the rest were not added"
        if kept:
            msg += f"; the mask {kept[0]!r} was kept"
        if dropped:
            msg += f"; {', '.join(repr(n) for n in dropped)} {'was' if len(dropped) == 1 else 'were'} removed"
        msg += f". To see its probability and heatmaps, {why[1]}."
        self.status.value = msg
        notify_warning(msg)
        if end_run:
            self._finish_run(False)

    def _mask_target(self, base: str) -> str:
        """The layer a run's mask goes to: the newest of ``base``, ``base (2)``, ... (the one the
        Correct tab uses), updated in place. If it was edited since or has slices marked reviewed,
        ``confirm_overwrite`` asks first; No keeps the edits and marks in it, hidden, and the mask goes to the next
        ``base (n)``."""
        layers = self.viewer.layers
        family = [base, *(f"{base} ({n})" for n in range(2, len(layers) + 2))]
        present = [name for name in family if name in layers]
        if not present:
            return base
        latest = layers[present[-1]]
        # reviewed marks are the clinician's work too: a mask with marks is asked about, edited or not (they went
        # with no question when its voxels were the last run's)
        if latest.metadata.get("attnseg_hash") == data_hash(latest.data) and not latest.metadata.get("reviewed_slices"):
            return latest.name
        if self.confirm_overwrite(latest.name):  # replaced: the new data bring their own hash (made on the worker;
            return latest.name  # hashing the edited mask again here took the GUI thread 0.1-0.2 s on a 512^2 x 300 CT)
        latest.visible = False  # the new prediction is what the user looks at
        return family[family.index(latest.name) + 1]

    def _show_one(self, data, kwargs, kind, geometry):
        own = None  # the class names a person gave the mask this run updates in place (they went, unsaid)
        if kind == "labels":
            kwargs["name"] = self._mask_target(kwargs["name"])
            before = self.viewer.layers[kwargs["name"]] if kwargs["name"] in self.viewer.layers else None
            own = own_names(before) if getattr(before, "_type_string", "") == "labels" else None
        layer = upsert_layer(self.viewer, data, kwargs, kind)
        # a heatmap says what it shows (level, pixels per value, what 0 and 1 mean) in the status bar while it is
        # selected. (napari's colorbar overlay as a legend crashed napari 0.9.2 in glDrawArrays when a re-run with
        # another model removed the heatmap that showed it.)
        if (kwargs.get("metadata") or {}).get("attnseg", {}).get("help"):
            keep_help(self.viewer, layer)
        if kind == "labels":
            layer.metadata["attnseg_prediction"] = np.array(data, copy=True)
            for key in ("affine", "spacing", "source_path", "nifti", "attnseg_source_uid"):  # this run's image only
                layer.metadata.pop(key, None)
            layer.metadata.update(geometry or {})
            if own and own != [str(n) for n in layer.metadata.get("class_names") or []]:  # (kept, as typed names are)
                layer.metadata["class_names"] = list(own)
                say_names_kept(layer, own)
            # the voxels are a new prediction now: what a person reviewed on them before no longer holds
            if layer.metadata.pop("reviewed_slices", None):
                notify_warning(f"{layer.name} holds a new prediction: its reviewed-slice marks were cleared; "
                               "review (R) the slices again before exporting.")
        return layer
