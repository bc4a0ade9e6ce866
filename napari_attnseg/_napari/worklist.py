"""One napari session through a worklist of cases (open, segment, correct, export, close, next): what the panels
keep from one case to the next, and what they must not.

- :func:`real_viewer`: napari hands a panel opened from its Plugins menu a proxy of the viewer, which wraps every
  layer it gives in a new proxy at each look-up, so ``layer is other`` was False for the same layer: every click of
  *Click to fix* started a new object (a negative click after a positive one was refused with "Start an object with
  a positive click"), and the Correct tab took the chosen mask for another one at every change of the layer list.
- :class:`CaseFields`: the Correct tab's fields typed for one case (class names, case id, *Replace the case*) and
  its suggested-slice line do not follow the clinician to the next case's mask: the next case was exported under the
  previous one's class names, or with the previous case id and *Replace* ticked it replaced the previous case of
  the dataset.
"""

from __future__ import annotations


def real_viewer(viewer):
    """The viewer itself behind napari's plugin proxy (the same object when it is no proxy)."""
    return getattr(viewer, "__wrapped__", viewer)


def case_of(layer) -> str | None:
    """What tells a case apart: the image's file (a case closed and opened again is the same case), else the layer."""
    if layer is None:
        return None
    return str(layer.metadata.get("source_path") or layer.unique_id)


class CaseFields:
    """A mixin of the Correct panel; needs its ``viewer``, ``image_combo``, ``class_names_edit``, ``case_edit``,
    ``replace_box``, ``suggest_label``, ``_auto_names``."""

    _names_for: str | None = None  # the case the class names were typed for
    _case_id_for: str | None = None  # the case the case id / Replace were set for

    def _chosen_case(self) -> str | None:
        name = self.image_combo.value
        return case_of(self.viewer.layers[name]) if name in self.viewer.layers else None

    def _case_fields_typed(self, *_) -> None:
        self._case_id_for = self._chosen_case()

    def _next_case(self, mask) -> None:
        """Another ``mask`` is watched (its image chosen; None: no mask): the suggestion of the previous mask goes; the
        class names, case id and *Replace* typed for another case are cleared (the names then come from this mask)."""
        self.suggest_label.value = ""
        self._suggest_cache = None  # (the last run's probabilities and uncertainty map: freed with their case)
        if mask is None:
            return
        case = self._chosen_case()
        if self._names_for not in (None, case):
            self._auto_names = self.class_names_edit.value.strip()  # (so this mask's names replace them)
            self._names_for = None
        if self._case_id_for not in (None, case):
            self.case_edit.value = ""
            self.replace_box.value = False
            self._case_id_for = None
