"""The last part of a fine-tuning run: train the chosen checkpoint on every reviewed slice, the held-out
validation slices included.

Why: a clinician reviews a handful of slices. Validation has to hold some of them out (a tumour slice
and a tumour-free one), so the model never sees exactly the slices that sit next to the untouched ones
it should now get right. Measured on ``radiomics/lung1`` (nuclei-2d start, slices 18, 20, 32, 34
reviewed, 33 untouched): the validated model scored 0.557 Dice on slice 33; one more minute on all four
slices, 0.935. So a share of the budget (``TrainConfig.refit``, fine-tuning default 0.25) is kept for
this: after the validated part has chosen its best epoch (and only if that beat the start model), the
best weights train on training + validation parts at a falling learning rate (half the peak down to
2 %), with the hard negatives still refreshed. The validation Dice reported stays the one measured
before the validation slices were trained on; a check on those slices afterwards (they must not get
worse by more than ``REFIT_TOLERANCE``) keeps the validated weights if something went wrong.

:class:`Refit` is a mixin of :class:`~.trainer.Trainer`.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np

from ..errors import Cancelled
from .sampling import PatchSampler

REFIT_SPLITS = ("held-out slices along axis 0", "slabs along axis 0")
REFIT_TOLERANCE = 0.05  # validation Dice (on the now trained-on slices) the refit may lose before it is undone


class Refit:
    """Phase two of a fine-tuning run (see the module docstring)."""

    def _refit_applies(self) -> bool:
        c = self.cfg
        # only for the automatic split of one case into held-out slices/slabs (the clinician's reviewed
        # slices); a validation given as regions, a split file or whole cases stays held out
        return (bool(c.start_model) and self.settings.get("refit", 0) > 0 and self.split.criterion == "val_dice"
                and self.split.how in REFIT_SPLITS and self.dist.world_size == 1 and not c.prompts)

    def refit_epochs(self, total: int) -> int:
        """How many of ``total`` epochs go to the refit (0 when it does not apply)."""
        if not self._refit_applies() or total < 2:
            return 0
        return max(1, min(total - 1, round(total * self.settings["refit"])))

    def _refit_due(self, s: dict, epoch: int, phase1: int | None) -> int | None:
        """The epoch the validated part ends at. When it is reached and no epoch has beaten the start model,
        there is nothing to refit: the refit's epochs go to more validated epochs (a chance to beat it)."""
        if phase1 is not None and epoch >= phase1 and s["best_epoch"] == 0 and s.get("refit_epochs"):
            self.notes.append(f"no epoch had beaten the start model after {epoch} epochs, when the refit was due: "
                              f"its {s['refit_epochs']} epoch(s) went to more validated epochs")
            s["refit_epochs"] = 0
            return s["planned"]
        return phase1

    def patience(self) -> int:
        """Early stopping's patience: the one given, else :data:`~.config.FT_PATIENCE` for a run the refit applies to
        (lung1, one seed each: 0.358 / 0.483 pooled untouched Dice with 5, 0.280 with 10), else :data:`~.config.PATIENCE`."""
        from .config import FT_PATIENCE, PATIENCE

        if self.cfg.patience is not None:
            return int(self.cfg.patience)
        return FT_PATIENCE if self._refit_applies() else PATIENCE

    def _refit_gets_the_rest(self, s: dict, epoch: int) -> None:
        """Early stopping ended the validated epochs at ``epoch``: the refit trains the epochs left of the plan, not
        only its share (lung1, tumour slices 32 and 34 reviewed: the validation peaked at epoch 1, stopped at 11, the
        refit trained 4 of the 17 planned epochs and 2 were left unused, though it is the refit that learns there)."""
        if not s.get("refit_epochs") or s["planned"] is None or s["best_epoch"] == 0:
            return
        left = s["planned"] - epoch
        if left > s["refit_epochs"]:
            self.notes.append(f"the refit takes the {left} epochs early stopping left (its share was {s['refit_epochs']})")
            s["refit_epochs"] = left

    def _refit(self, s: dict, best_path: Path, log_path: Path, t0: float, budget: float | None) -> None:
        cfg = self.cfg
        n = s.get("refit_epochs", 0)
        if n <= 0 or s["best_epoch"] == 0 or s.get("refit_done"):
            if n > 0 and s["best_epoch"] == 0:
                self.notes.append("no refit on the validation slices: the start model was kept")
            return
        if budget is not None and (self._cut is not None or self._time_left() <= 0):
            self.notes.append("no time left in the budget to train on all reviewed slices (refit)")
            return
        from ..checkpoint import load_model

        self.model.load_state_dict(load_model(best_path, device=self.device).state_dict())
        if self.ema_model is not None:
            self.ema_model.load_state_dict(self.model.state_dict())
        val_arrays = [(self._images[p.case][(slice(None), *p.slices)], self._labels[p.case][p.slices])
                      for p in self.split.val]
        self.train_parts = self.train_parts + val_arrays
        hard = self._false_positives() if self.sampler.hard is not None else None
        self._start_hard = hard
        self.sampler = PatchSampler([x for x, _ in self.train_parts], [y for _, y in self.train_parts], self.patch,
                                    self.rng, fg_fraction=cfg.fg_fraction, ignore_index=self.loss_ignore, hard=hard,
                                    hard_fraction=self.settings["hard_negatives"])
        self._far_parts_grew()
        if self._far_ready:
            self.set_far_masks()
        start_epoch, done = s["epoch"], 0
        self.model.train()
        try:
            for k in range(n):
                if budget is not None and self._time_left() <= 0:  # keeps time for the check below
                    break
                # half the peak rate falling to 2 % over the refit's epochs
                losses, lr = self._train_epoch(
                    start_epoch + k,
                    lambda pos: self.base_lr * (0.02 + 0.48 * (1 + math.cos(math.pi * (pos - start_epoch) / n))),
                    s["planned"], t0, budget)
                done += 1
                now = time.perf_counter() - t0
                loss = float(np.mean(losses))
                with open(log_path, "a", newline="") as f:
                    csv.writer(f).writerow([start_epoch + done, f"{lr:.4g}", f"{loss:.4f}", "", "refit",
                                            f"{s['best']:.4f}", f"{now:.1f}"])
                if self.progress is not None:
                    self.progress({"epoch": start_epoch + done, "epochs": s["planned"], "loss": loss,
                                   "val_dice": float("nan"), "val_dice_per_class": [], "best": s["best"], "lr": lr,
                                   "elapsed": now, "budget": budget, "refit": True,
                                   "steps_done": self._cut[1] if self._cut else cfg.iters_per_epoch})
                if self._cut is not None:  # the budget ended inside this epoch
                    break
        except Cancelled:
            self.notes.append("cancelled while training on the validation slices; the validated checkpoint is kept")
            raise
        if done == 0:
            return
        after = self._score(self.evaluate(self.val_parts))
        s.update(epoch=start_epoch + done, refit_done=True, elapsed=time.perf_counter() - t0)
        if after < s["best"] - REFIT_TOLERANCE:
            self.notes.append(f"the refit on all reviewed slices lowered the validation slices' Dice ({s['best']:.4f} -> "
                              f"{after:.4f}); the validated checkpoint (epoch {s['best_epoch']}) is kept")
            return
        self.notes.append(f"after choosing epoch {s['best_epoch']} on the validation, it trained {done} more epoch{'s' if done != 1 else ''} on "
                          f"all reviewed slices, validation ones included (their Dice then {after:.4f}; the validation "
                          f"Dice reported, {s['best']:.4f}, was measured before they were trained on)")
        s["refit_epochs_done"] = done
        self._save(best_path, s, s["epoch"], s["elapsed"], finished=False)
