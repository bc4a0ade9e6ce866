"""The Fine-tune panel's *Start model* list: which models it offers (bundled, the Segment panel's, the
ones fine-tuned here), which one it proposes (the model that made the newest mask, else one whose classes
match the dataset's), and the card lookups behind that (classes, spatial dims, click models). A start model the
user chose by hand stays when the dataset changes or a layer comes, unless it cannot train on the dataset
(:meth:`StartModels.propose_start`); an export, and a run that learnt, choose the next round's start.

:class:`StartModels` is a mixin of :class:`~.finetune_widget.FinetuneWidget`; it needs the panel's
``viewer``, ``_paths`` (model label -> checkpoint path or bundled name), ``model_combo``, ``dataset_edit``,
``run_button``, ``status``, ``history``, ``result``, ``_pending`` (a dict), ``_summary()`` (the dataset: :func:`.finetune_form.dataset_summary`) and
``_model_changed()``.
"""

from __future__ import annotations

from pathlib import Path

from napari.layers import Labels

from ._common import find_docked, is_deleted, set_choices
from .correct_widget import folder_text
from .model_choice import card_dict, user_model_entries

PREVIOUS_RUN = "Previous run"


class StartModels:
    """The start-model choices of the Fine-tune panel and the lookups that pick the default."""

    _auto_model: str | None = None  # the start model the panel chose last (another value: the user's own choice)
    _dropped = ""  # why the user's choice gave way to the proposal (said under the list while the proposal stands)

    def _segment_widget(self):
        """The docked Segment panel (in the tabbed dock or alone), or None: none is docked for it (the Fine-tune
        panel docked alone says where the model is instead)."""
        from .segment_widget import SegmentWidget

        return find_docked(self.viewer, SegmentWidget)

    def running(self) -> bool:
        """A fine-tuning run is going: the form shows its settings; what would change them (a Segment run's new
        mask, an export) waits for its end (:meth:`_after_run`), so its messages and the form agree."""
        return not self.run_button.enabled

    def refresh_models(self) -> None:
        """Bundled models, the segment panel's models, and the default: the model the mask came from."""
        from ..models.registry import bundled_models

        if is_deleted(self):  # (the viewer closed; a late signal)
            return
        for name in bundled_models():
            self._paths.setdefault(name, name)
        for name in user_model_entries(self._paths.values()):  # the user models folder
            self._paths.setdefault(name, name)
        self._add_segment_models()
        if self.running():  # listed now, the choice stays; the default is proposed when the run ends
            self._pending["refresh"] = True
            set_choices(self.model_combo, list(self._paths))
            return
        self.propose_start()
        self._model_changed()

    def propose_start(self) -> None:
        """List the models with :meth:`default_model` chosen, unless the user chose one by hand (not the one the
        panel chose last) that can train on the dataset: that choice stays (a dataset chosen or a layer added
        re-picked it before). One that cannot (a 3D model for a dataset of 2D images) gives way to the default, and
        the note under the list says so."""
        mine = self.model_combo.value if self.model_combo.value != self._auto_model else None
        if mine and mine in self._paths and self._fits_dataset(mine):
            set_choices(self.model_combo, list(self._paths))  # (keeps it)
            return
        default = self.default_model()
        if mine and default == mine:  # (the default's last resort is the current choice: here, one that cannot train)
            default = next((m for m in self._paths if self._fits_dataset(m) and not self._is_click_model(m)), None)
        set_choices(self.model_combo, list(self._paths), prefer=default)
        self._auto_model = self.model_combo.value
        self._dropped = "" if not mine or self._auto_model == mine else (
            f"{mine} (your choice) is a 3D model and the dataset {Path(folder_text(self.dataset_edit)).name} holds 2D "
            f"images, which it cannot train on: {self._auto_model} is proposed instead.")

    def _start_note(self, label: str) -> str:
        """The note under the list: why the user's choice was replaced (while the proposal stands), and what a
        run from ``label`` keeps of its output layer (:meth:`_head_note`)."""
        if label != self._auto_model:
            self._dropped = ""
        return " ".join(n for n in (self._dropped, self._head_note(label)) if n)

    def follow_export(self, folder: str, previous: str | None, model: dict | str | None) -> None:
        """The Correct panel exported ``folder``: train on it unless the user typed another dataset; start from
        the model that made the mask (``model``: its provenance, or a list label). During a run: at its end.
        The dataset proposed from an earlier session (``_auto_dataset``) is no typed choice: day 3 exported a 2D
        nuclei mask to a new folder, the tab kept day 2's brain dataset and fine-tuned nuclei-2d on the brain."""
        if self.running():
            self._pending["export"] = (folder, previous, model)
            return
        status = self.status.value  # the last run's figures (status and plot) predate this export: say so
        if (self.history or self.result is not None) and status and not status.startswith(PREVIOUS_RUN):
            self.status.value = f"{PREVIOUS_RUN} (before the export to {Path(folder).name}; Fine-tune to train on it): " \
                f"{status}"
        if folder_text(self.dataset_edit) in ("", previous or "", getattr(self, "_auto_dataset", "") or ""):
            self.dataset_edit.value = folder
            self._auto_dataset = ""  # (superseded: the same folder chosen again later is the user's choice)
        label = self._label_for(model) if isinstance(model, dict) else model
        if label in self._paths:  # (the model that made the mask: the new round's start, a choice by hand or not)
            # (or the newest fine-tuned from it on this dataset, as default_model: day 3's export of day 2's mask,
            # made by round 1's model, proposed round 1's model again and round 3 dropped what round 2 learnt)
            label = self._trained_on_dataset(descends_from=label) or label
            self._auto_model, self._dropped = label, ""
            self.model_combo.value = label

    def _after_run(self) -> None:
        """A run ended: what was held back while it ran (an export to follow, a new default start model), and
        the proposed output folder (a free one again: this run's is taken now)."""
        pending, self._pending = self._pending, {}
        if pending.get("dataset"):
            self._dataset_changed()
        if "export" in pending:
            self.follow_export(*pending["export"])
        if pending.get("refresh"):
            self.refresh_models()
        self._model_changed()

    def _add_segment_models(self) -> None:
        """The docked Segment panel's models join the list, which follows that panel's from then on."""
        seg = self._segment_widget()
        if seg is None:
            return
        self.follow_segment(seg)
        for label in seg.model_names():
            entry = seg.model_entry(label)
            self._paths.setdefault(label, str(getattr(entry, "checkpoint_path", None) or entry))

    def segment_models_changed(self) -> None:
        """The Segment panel added a model (e.g. Load checkpoint...): offer it too; the choice stays."""
        if is_deleted(self):
            return
        self._add_segment_models()
        set_choices(self.model_combo, list(self._paths))
        if not self.running():  # (the name and folder proposed for a run's model stay while it runs)
            self._model_changed()

    def follow_segment(self, seg) -> None:
        """Offer the models ``seg`` (a Segment panel) adds from now on (connected once)."""
        if getattr(self, "_followed", None) is not seg:
            self._followed = seg
            seg.models_changed.connect(self.segment_models_changed)

    def _checkpoint_label(self, path: str) -> str:
        """The list label of a checkpoint fine-tuned here when no Segment panel names it: its card's name, with
        its folder when another entry has that name."""
        from ..checkpoint import read_card

        try:
            label = read_card(path).name or Path(path).parent.name
        except Exception:  # (it was just written; a broken card still gets a label)
            label = Path(path).parent.name
        return label if self._paths.get(label, str(path)) == str(path) else f"{label} ({Path(path).parent.name})"

    def add_model(self, label: str, path: str, select: bool = True) -> None:
        self._paths[label] = str(path)
        set_choices(self.model_combo, list(self._paths), prefer=label if select else None)
        if select:  # (a run that learnt: the next round's start, chosen by the panel)
            self._auto_model, self._dropped = self.model_combo.value, ""
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
        ckpt, digest = info.get("checkpoint"), info.get("checkpoint_sha256")
        if ckpt:
            for label, path in self._paths.items():
                if str(path) == str(ckpt):
                    return label
        if digest:  # by its weights (a mask made on another machine: its file's path is not this one's, and a
            for label in self._paths:  # model of that name here may be another, e.g. the colleague's own)
                if (self._card(label) or {}).get("weights_sha256") == digest:
                    return label
        name = info.get("model")
        if digest and ((self._card(name) or {}).get("weights_sha256") or digest) != digest:
            return None
        return name if name in self._paths and (not ckpt or self._paths[name] == name) else None

    def default_model(self) -> str | None:
        """The mask's model (or the newest model fine-tuned from it on this dataset: the next round), else the
        newest model fine-tuned on the dataset, else one whose classes match the dataset's, else the current choice."""
        mask = self.mask_model()
        found = (self._trained_on_dataset(descends_from=mask) or mask) if mask else self._trained_on_dataset()
        if found:
            return found
        n = self._dataset_classes()
        if n is not None:
            for label in self._paths:  # (a click model is not a start for automatic segmentation)
                if self._model_classes(label) == n and self._fits_dataset(label) and not self._is_click_model(label):
                    return label
        return self.model_combo.value

    def _trained_on_dataset(self, descends_from: str | None = None) -> str | None:
        """The newest listed model trained on the chosen dataset folder (its card says so): the start of the next
        round when no open mask names its model, e.g. the next day, with the mask reopened from its file (a file
        keeps no provenance), where a bundled model of the same classes (nuclei-2d for a tumour) was proposed.
        ``descends_from``: only a model fine-tuned from that list entry, or from one fine-tuned from it (the cards'
        start and weights digests): day 2 reopened day 1's mask, made by ``brain-mri-3d``, and round 2 started
        from ``brain-mri-3d`` again instead of day 1's ``brain-mri-3d-finetuned``, losing what round 1 learnt."""
        folder = folder_text(self.dataset_edit)
        found: list[tuple[float, str, dict]] = []
        for label in self._paths if folder else ():
            card = self._card(label) or {}
            trained_on = (card.get("training") or {}).get("dataset")
            if not trained_on or self._is_click_model(label) or not self._fits_dataset(label):
                continue
            try:
                if Path(trained_on).expanduser().resolve() != Path(folder).expanduser().resolve():
                    continue
                found.append((Path(card.get("path") or self._paths[label]).stat().st_mtime, label, card))
            except OSError:  # (a bundled name, or a file gone meanwhile)
                continue
        found.sort(key=lambda item: item[:2])
        if descends_from is not None:  # the lineage: the start's weights, then each descendant's, oldest first
            lineage = {(self._card(descends_from) or {}).get("weights_sha256")} - {None}
            kept = []
            for item in found:
                if item[2]["training"].get("start_model_sha256") in lineage and item[1] != descends_from:
                    lineage.add(item[2].get("weights_sha256"))
                    kept.append(item)
            found = kept
        return found[-1][1] if found else None

    def _card(self, label: str) -> dict | None:
        """The card (a dict) of a list entry, bundled or a checkpoint; None when it cannot be read."""
        return card_dict(self._paths.get(label))

    def _fits_dataset(self, label: str) -> bool:
        """False for a 3D model and a dataset of 2D images (it cannot train on them; exported or made elsewhere)."""
        try:
            ndim = len(self._summary()["cases"][0]["shape"])
        except Exception:  # unknown: let the run say
            return True
        config = (self._card(label) or {}).get("config") or {}
        return int(config.get("spatial_dims", 2)) <= ndim

    def _is_click_model(self, label: str) -> bool:
        return bool(((self._card(label) or {}).get("config") or {}).get("prompts"))

    def _dataset_classes(self) -> int | None:
        summary = self._summary()  # (None: not a dataset (yet); the run says so)
        return len(summary["label_names"]) if summary and summary["label_names"] else None

    def _head_note(self, label: str) -> str:
        """What a run from ``label`` keeps of its output layer for the dataset's classes (as the run's notes say:
        the rows of the classes both name, matched as :func:`~napari_attnseg.training.steps.kept_classes` does);
        '' when the numbers of classes agree or either is unknown."""
        from ..training.steps import kept_classes

        names = list((self._summary() or {}).get("label_names") or [])  # ([]: not a dataset (yet); the run says so)
        classes = [str(c) for c in (self._card(label) or {}).get("classes") or []]
        if not names or not classes or len(names) == len(classes):
            return ""
        rows = kept_classes(classes, names)
        kept, new = [n for j, n in enumerate(names) if j in rows], [n for j, n in enumerate(names) if j not in rows]
        head = (f"and its output rows of {', '.join(kept)}; {', '.join(new)} {'is' if len(new) == 1 else 'are'} trained "
                "anew" if kept else "and its output layer is trained anew (no class in common)")
        return (f"{label} predicts {len(classes)} classes ({', '.join(classes)}), the dataset has {len(names)}: its "
                f"encoder and decoder are kept, {head}.")

    def _model_classes(self, label: str) -> int | None:
        return len((self._card(label) or {}).get("classes") or []) or None
