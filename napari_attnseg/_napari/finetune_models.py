"""The Fine-tune panel's *Start model* list: which models it offers (bundled, the Segment panel's, the
ones fine-tuned here), which one it proposes (the model that made the newest mask, else one whose classes
match the dataset's), and the card lookups behind that (classes, spatial dims, click models).

:class:`StartModels` is a mixin of :class:`~.finetune_widget.FinetuneWidget`; it needs the panel's
``viewer``, ``_paths`` (model label -> checkpoint path or bundled name), ``model_combo``, ``dataset_edit``
and ``_model_changed()``.
"""

from __future__ import annotations

from pathlib import Path

from napari.layers import Labels

from ._common import find_docked, set_choices
from .correct_widget import folder_text


class StartModels:
    """The start-model choices of the Fine-tune panel and the lookups that pick the default."""

    def _segment_widget(self):
        """The docked segment widget (docking the panels when there is none), or None without a window."""
        from .segment_widget import SegmentWidget

        found = find_docked(self.viewer, SegmentWidget)
        if found is not None:
            return found
        try:
            _, widget = self.viewer.window.add_plugin_dock_widget("napari-attnseg", "Attention segmentation")
        except Exception:  # no window (headless use) or the plugin is not registered
            return None
        widget = getattr(widget, "native", widget)
        return widget if isinstance(widget, SegmentWidget) else getattr(widget, "segment", None)

    def refresh_models(self) -> None:
        """Bundled models, the segment panel's models, and the default: the model the mask came from."""
        from ..models.registry import bundled_models

        for name in bundled_models():
            self._paths.setdefault(name, name)
        from .segment_widget import SegmentWidget

        seg = find_docked(self.viewer, SegmentWidget)
        if seg is not None:
            for label in seg.model_names():
                entry = seg.model_entry(label)
                self._paths.setdefault(label, str(getattr(entry, "checkpoint_path", None) or entry))
        set_choices(self.model_combo, list(self._paths), prefer=self.default_model())
        self._model_changed()

    def add_model(self, label: str, path: str, select: bool = True) -> None:
        self._paths[label] = str(path)
        set_choices(self.model_combo, list(self._paths), prefer=label if select else None)
        self._model_changed()

    def mask_model(self) -> str | None:
        """The model that predicted the newest mask in the viewer (its provenance), if it is in the list."""
        for layer in reversed(list(self.viewer.layers)):
            info = layer.metadata.get("attnseg") if isinstance(layer, Labels) else None
            found = self._label_for(info) if info else None
            if found:
                return found
        return None

    def _label_for(self, info: dict) -> str | None:
        """The list entry of the model a provenance names: by its checkpoint file first (two fine-tuned models
        can share a card name), else by name."""
        ckpt = info.get("checkpoint")
        if ckpt:
            for label, path in self._paths.items():
                if str(path) == str(ckpt):
                    return label
        name = info.get("model")
        return name if name in self._paths and (not ckpt or self._paths[name] == name) else None

    def default_model(self) -> str | None:
        """The mask's model, else one whose classes match the dataset's, else the current choice."""
        found = self.mask_model()
        if found:
            return found
        n = self._dataset_classes()
        if n is not None:
            for label in self._paths:  # (a click model is not a start for automatic segmentation)
                if self._model_classes(label) == n and self._fits_dataset(label) and not self._is_click_model(label):
                    return label
        return self.model_combo.value

    def _card(self, label: str) -> dict | None:
        """The card (a dict) of a list entry, bundled or a checkpoint; None when it cannot be read (its own
        error comes when it is used)."""
        from ..checkpoint import read_card
        from ..models.registry import bundled_models

        path = self._paths.get(label)
        bundled = bundled_models()
        try:
            return bundled[path] if path in bundled else read_card(path).to_dict()
        except Exception:
            return None

    def _fits_dataset(self, label: str) -> bool:
        """False for a 3D model and a dataset of 2D images (it cannot train on them)."""
        from ..data.manifest import read_manifest

        try:
            ndim = len(read_manifest(Path(folder_text(self.dataset_edit)))["cases"][0]["shape"])
        except Exception:  # unknown: let the run say
            return True
        config = (self._card(label) or {}).get("config") or {}
        return int(config.get("spatial_dims", 2)) <= ndim

    def _is_click_model(self, label: str) -> bool:
        return bool(((self._card(label) or {}).get("config") or {}).get("prompts"))

    def _dataset_classes(self) -> int | None:
        from ..data.manifest import read_manifest

        folder = folder_text(self.dataset_edit)
        try:
            manifest = read_manifest(Path(folder)) if folder else None
        except Exception:  # not a dataset (yet): the run says so
            return None
        return len(manifest["label_names"]) if manifest and manifest.get("label_names") else None

    def _model_classes(self, label: str) -> int | None:
        return len((self._card(label) or {}).get("classes") or []) or None
