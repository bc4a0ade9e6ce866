"""What a run writes: the model card of a checkpoint, and the command that reproduces the run.
:class:`CardWriter` is a mixin of :class:`~.trainer.Trainer`."""

from __future__ import annotations

import datetime
import hashlib
import re
import shlex
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .._files import describe_machine
from .._version import __version__
from ..checkpoint import ModelCard, save_model
from ..data.label_values import class_key
from .split import _labelled
from .steps import _mean

# a case labelled on at least this share of its voxels (whole, or mostly) gives a whole scan's class shares
WHOLE_CASE = 0.5


class CardWriter:
    """The card of a :class:`~.trainer.Trainer`'s checkpoints."""

    def _reproduce(self, planned: int | None) -> str | None:
        """The command that repeats this run exactly: the given one, with --minutes replaced by --epochs N."""
        cmd = self.cfg.command
        if not cmd.startswith("attnseg ") or planned is None:
            return None
        words = shlex.split(cmd)
        out, skip = [], False
        for w in words:
            if skip:
                skip = False
                continue
            if w in ("--minutes", "--epochs"):
                skip = True
                continue
            if w.startswith(("--minutes=", "--epochs=")) or w == "--resume":
                continue
            out.append(w)
        line = " ".join(shlex.quote(w) for w in [*out, "--epochs", str(planned)])
        if getattr(self, "_cut", None):  # an epoch cut short by the budget has no --epochs equivalent
            line += (f"  # not exact: the time budget cut epoch {self._cut[0]} after {self._cut[1]} of "
                     f"{self.cfg.iters_per_epoch} steps")
        return line

    def image_digest(self, case: int = 0) -> str:
        """sha256 of a case's image array (a later run on the same image knows what this one trained on;
        two cases of one image are told apart from two images)."""
        cache = self.__dict__.setdefault("_image_digests", {})
        if case not in cache:
            img = np.ascontiguousarray(self.raw[case][0])
            cache[case] = hashlib.sha256(str(img.shape).encode() + img.tobytes()).hexdigest()
        return cache[case]

    def _trained_rows(self, s: dict) -> dict[str, Any]:
        """One case: the positions along the first axis whose labels the weights trained on (the validation
        ones too after a kept refit), and the image's digest; a next round's split validates elsewhere."""
        if len(self.case_ids) != 1:
            return {}
        if s.get("best_epoch") == 0 and s.get("before") is not None:  # the start weights were kept: what they trained on
            t = getattr(self.base_card, "training", None) or {}
            same = t.get("image_sha256") == self.image_digest()
            return {"trained_rows": list(t.get("trained_rows") or []) if same else [], "image_sha256": self.image_digest()}
        parts = list(self.split.train) + (list(self.split.val) if s.get("refit_epochs_done") else [])
        lab = self._labels[0]
        rows = set()
        for p in parts:
            a, b = p.box[0]
            labelled = _labelled(lab[a:b], self.ignore).reshape(b - a, -1).any(1)
            rows.update(int(a + i) for i in np.flatnonzero(labelled))
        return {"trained_rows": sorted(rows), "image_sha256": self.image_digest()}

    def _object_diameter(self, base, s: dict) -> float | None:
        """The card's ``object_diameter`` when the start model has one (a model sized for its objects): that of
        this dataset's labelled objects (median equivalent diameter, slice by slice in volumes, unreviewed
        slices left out), so a nuclei model fine-tuned on CT tumours does not keep the nuclei's size."""
        if base is None or getattr(base, "object_diameter", None) is None:
            return None
        if s.get("best_epoch") == 0 and s.get("before") is not None and not self.head_reset:
            return base.object_diameter  # no epoch beat the start: its weights, and its objects, are kept
        from ..inference.diameter import measure_diameter

        if getattr(self, "_diameter", None) is None:
            masks = [(lab > 0) & (lab != self.ignore) if self.ignore is not None else lab > 0 for _, lab, _ in self.raw]
            found = [measure_diameter(m, per_slice=m.ndim == 3) for m in masks if m.any()]
            weights = [n for d, n in found if d is not None]
            self._diameter = (round(float(np.average([d for d, n in found if d is not None], weights=weights)), 2)
                              if weights else False)
        return self._diameter or None

    def _card_spacing(self, base) -> list[float] | None:
        """The dataset's spacing (the grid the model learnt), or None like the start model's card when that
        model works in pixels (no spacing, e.g. nuclei-2d) and the dataset's pixels are uncalibrated (1.0):
        recording 1.0 would make later runs resample calibrated images (0.65 um) by a unit mismatch. Such a start
        model sized by its objects (an object_diameter) fine-tuned on plain image files (TIFF, PNG: microscopy) stays
        in pixels whatever their pixel size: a card spacing has no unit, and nuclei-2d fine-tuned on a 0.325 um TIFF
        recorded [0.325, 0.325], so the same pixels saved in nm (325) were to be enlarged 1000x (977 GiB) and an
        uncalibrated copy 3.1x (Dice 0.906 against 0.947). Fine-tuned on a CT or MRI (NIfTI, DICOM: mm), it keeps
        the scans' spacing, so the next scan is resampled to it."""
        if not self.spacing or (base is not None and base.spacing is None and base.object_diameter
                                and _plain_files(self)):
            return None  # (a microscopy model sized by its objects, fine-tuned on TIFFs: it stays in pixels)
        spacing = [float(v) for v in self.spacing[-self.model.spatial_dims:]]
        if all(v == 1.0 for v in spacing) and (base.spacing is None if base is not None else _uncalibrated(self)):
            return None
        return spacing

    def _image_statistics(self) -> dict[str, float]:
        """What inference compares a new image and its result with (``inference/checks.py``): the share of
        labelled voxels that are foreground, and where the training images' median lies between their
        1st and 99th percentiles (single-channel images)."""
        from ..inference.checks import median_position

        fg = total = 0
        for _img, lab, _ in self.raw:
            labelled = lab != self.ignore if self.ignore is not None else np.ones(lab.shape, bool)
            fg += int(np.count_nonzero(labelled & (lab > 0)))
            total += int(np.count_nonzero(labelled))
        out = {"foreground_share": round(fg / total, 4)} if total else {}
        positions = [median_position(img[0]) for img, _, _ in self.raw if img.shape[0] == 1]
        positions = [p for p in positions if p is not None]
        if positions:
            out["median_position"] = round(float(np.mean(positions)), 3)
        return out

    def _class_shares(self, base, s: dict) -> dict[str, Any]:
        """``class_shares`` (each class's share of the labelled foreground; inference warns when a prediction is
        far from them, inference/brain.py) when the start model's card has them: the start model's when its weights
        are kept; else this dataset's, counted on its labelled voxels (never 'ignore') of the cases labelled
        whole or mostly (at least ``WHOLE_CASE`` of their voxels). Reviewed slices alone are not a whole scan: a few
        picked ones (often where the model erred) gave white matter 5 % (whole MNI scan: 37 %), and every run on the
        very scan fine-tuned on warned. Then the start model's shares of the classes it knows (by name) are kept and
        the others left out (unchecked); a class absent from the counted voxels is left out too, never 0 %."""
        old = (getattr(base, "metrics", None) or {}).get("class_shares") if base is not None else None
        if not old:
            return {}
        if s.get("best_epoch") == 0 and s.get("before") is not None and not self.head_reset:
            return {"class_shares": dict(old)}
        names = list(self.dataset.label_names)
        counts = np.zeros(self.n_classes, np.int64)
        partial = []
        for cid, (_img, lab, _) in zip(self.case_ids, self.raw):
            labelled = lab != self.ignore if self.ignore is not None else np.ones(lab.shape, bool)
            share = float(np.count_nonzero(labelled)) / max(1, lab.size)
            if share < WHOLE_CASE:
                partial.append(f"{cid}: {share:.0%}" if share >= 0.01 else f"{cid}: {share:.1%}")
                continue
            counts += np.bincount(lab[labelled].astype(np.int64).ravel(), minlength=self.n_classes)[:self.n_classes]
        total = int(counts[1:].sum())
        if total:
            return {"class_shares": {name: round(float(counts[i]) / total, 4)
                                     for i, name in enumerate(names) if i and counts[i]}}
        by_key = {class_key(k): float(v) for k, v in dict(old).items()}
        kept = {name: by_key[class_key(name)] for name in names[1:] if class_key(name) in by_key}
        if partial and (kept or len(names) > 2) and not getattr(self, "_shares_noted", False):  # (one class: 100 %)
            self._shares_noted = True
            self.notes.append(
                "class shares (what inference compares a prediction's classes with): "
                + (f"the start model's ({', '.join(f'{k} {v:.0%}' for k, v in kept.items())})" if kept else "none")
                + f"; the labelled voxels ({'; '.join(partial)} of the case) are reviewed slices, too few to "
                "estimate a whole scan's")
        return {"class_shares": kept} if kept else {}

    def _card_orientation(self, base) -> list[str] | None:
        """The orientation of the training volumes' array axes when every case has the same (inference
        turns other storages to it); the start model's when the files carry none (TIFF); None when mixed."""
        # each case's, or the start model's when the case was turned to it (.orientation)
        found = set(getattr(self, "_case_codes", None) or [case.orientation() for case in self.dataset.cases])
        if len(found) > 1:
            if not getattr(self, "_orientation_noted", False):
                self._orientation_noted = True
                named = ", ".join(sorted("".join(c) if c else "none" for c in found))
                self.notes.append(f"the cases are stored in different orientations ({named}): the model's card "
                                  "names none, so volumes are segmented as stored")
            return None
        codes = found.pop() if found else None
        return list(codes) if codes else (list(base.orientation) if base is not None and base.orientation else None)

    def _save(self, path: Path, s: dict, epochs: int, seconds: float, finished: bool, test=None) -> None:
        cfg, base = self.cfg, self.base_card
        metrics: dict[str, Any] = {"val_dice": s["best"], "val_dice_per_class": s["best_per_class"],
                                   **self._image_statistics(), **self._class_shares(base, s)}
        if test:
            metrics.update(test_dice=_mean(test), test_dice_per_class=test)
        if s["test_before"]:
            metrics.update(test_dice_before=_mean(s["test_before"]), test_dice_before_per_class=s["test_before"])
        card = ModelCard(
            arch=self.model.arch, config=dict(self.model.config),
            name=cfg.name or (f"{base.name or Path(str(cfg.start_model)).stem}-finetuned" if base else self.model.arch),
            description=cfg.description or (f"{base.name or cfg.start_model} fine-tuned on {Path(cfg.dataset).name}" if base
                                            else f"{self.model.arch} trained on {Path(cfg.dataset).name}"),
            classes=list(self.dataset.label_names), normalization=dict(self.norm_spec),
            spacing=self._card_spacing(base), orientation=self._card_orientation(base),
            # a start model sized for its objects (microscopy): the objects of this dataset, measured
            object_diameter=self._object_diameter(base, s),
            # the start model's inference settings travel: skull and scalp stripped first (.brainprep), its overlap
            brain_extraction=getattr(base, "brain_extraction", None), overlap=getattr(base, "overlap", 0.25),
            tile=[int(p) for p in self.tile],
            prompt_init="threshold" if cfg.prompt_threshold > 0 else getattr(base, "prompt_init", None),
            training={
                "dataset": str(cfg.dataset), "dataset_manifest_sha256": self.dataset.manifest_sha256,
                "split": self.split.describe(), "split_parts": self.split.as_json(),
                "validation": self.split.validation, "selection": self.split.criterion,
                "head_reinitialised": self.head_reset,
                "epochs": epochs, "epochs_planned": s["planned"], "best_epoch": s["best_epoch"],
                "seconds": round(seconds, 1), "setup_seconds": round(getattr(self, "_setup_s", 0.0), 1),
                "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "machine": describe_machine(), "device": str(self.device), "precision": self.precision,
                "world_size": self.dist.world_size, "command": cfg.command or None,
                "reproduce": self._reproduce(s["planned"]), "start_model": cfg.start_model,
                "start_model_sha256": getattr(base, "weights_sha256", None) if base else None,
                "val_dice_before": s["before"], "val_dice_after": s["best"], "seed": cfg.seed,
                "code_version": __version__, "config": {k: v for k, v in asdict(cfg).items() if k != "command"},
                "finished": finished, "notes": list(self.notes), **self._trained_rows(s), **self._brain_record(),
            },
            metrics=metrics,
        )
        save_model(self.eval_model, path, card)
        self.model.train()


def _source_names(writer) -> list[str]:
    """The cases' source file names; a time-lapse's frame (``movie.tif (frame 3)``, one 2D case per frame in the
    nnU-Net and MONAI layouts) by its movie's file name."""
    return [re.sub(r" \(frame \d+\)$", "", str(getattr(c, "source_name", None) or ""))
            for c in getattr(getattr(writer, "dataset", None), "cases", [])]


def _plain_files(writer) -> bool:
    """Whether every case was exported from a plain image file (TIFF, PNG, NumPy, Zarr: microscopy, not a scan)."""
    names = _source_names(writer)
    plain = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".npy", ".zarr")
    return bool(names) and all(n.lower().endswith(plain) for n in names)


def _uncalibrated(writer) -> bool:
    """From scratch, whether a spacing of 1.0 means "no calibration": the cases come from plain image files (TIFF, PNG,
    NumPy: 1.0 is what their readers give without a pixel size) or, sources unknown, are 2D. A model from
    scratch on uncalibrated TIFFs recorded [1, 1] and shrank a calibrated 0.3 um image 3.3x at predict."""
    if _plain_files(writer):
        return True
    names = _source_names(writer)
    return writer.model.spatial_dims == 2 and not any(n.lower().endswith((".nii", ".nii.gz", ".dcm")) for n in names)
