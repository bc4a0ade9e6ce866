"""One trainer for ``attnseg train`` (from scratch), ``attnseg finetune`` (from a checkpoint) and the
napari Fine-tune panel.

Data: every case of an exported dataset, normalised as the model card says (statistics per whole
case, as at inference). The split (see :mod:`.split`) is by case, by regions of a case, or from a
split file; it is printed, returned and written into the card. Validation segments each whole
validation part with the inference engine (``predict``), so the Dice it reports is the Dice a user
gets, and ignores the ``ignore`` label; a big 2D part: a fixed set of its blocks (:mod:`.valblocks`).

Checkpoint selection: the validation Dice (pooled over a case's validation parts, averaged over
cases); when the split has no labelled foreground to validate on, the training loss (said in the
split text and the notes). Fine-tuning starts from the start model as the checkpoint to beat
(epoch 0): the result is never worse than the start on the validation, and the notes say when the
start weights were kept. A start model with other classes keeps its encoder and decoder and gets a
new output head. Fine-tuning defaults (:func:`.config.fine_tune_defaults`): lr 1e-4, the start
model's batch-norm statistics frozen, an L2-SP pull towards the start weights, a share of patches
centred on the start model's false positives on labelled background. CT in Hounsfield units is
normalised with a fixed window (``TrainConfig.ct_window``) unless a normalisation is given.

Schedule: AdamW, linear warm-up over ``warmup_epochs``, then cosine decay to 2 % of the peak.
A ``minutes`` budget is wall-clock time for the whole run, counted from the moment the trainer is
built: loading, the start model's validation and false positives (the setup, reported as
``setup_seconds`` and in the notes) and the final evaluation included. After the first epoch (its
duration is measured) the time left is turned into a number of epochs, so the schedule is the one
``--epochs N`` would give and the card can say which N reproduces the run. If epochs become slower (or
setup leaves less than one epoch), the run stops between optimizer steps when the time left would
not cover one validation and the final evaluation; an epoch cut that way is validated and not
followed by another (the first epoch always gets at least one step).

Where things live: :mod:`.setup` (data, model, normalisation, sampler, optimiser; a mixin),
:mod:`.card` (the checkpoint's card and the reproducing command; a mixin), :mod:`.state` (saving and
resuming a run; a mixin), :mod:`.validation` (validation, test and the selection score; a mixin),
:mod:`.update` (the optimizer step and the moving average; a mixin), :mod:`.steps` (Dice counts, the
loss module, precision, the schedule); this module runs the epochs.
"""

from __future__ import annotations

import csv
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import Cancelled, DatasetError
from . import ddp
from .augment import augment
from .budget import TimeBudget, _duration
from .card import CardWriter
from .config import AUGMENT_PROBABILITIES, TrainConfig, TrainResult, check_config
from .far import FarNegatives
from .out_lock import keep_folder, run_lock
from .refit import Refit
from .setup import RunSetup
from .split import Split, make_split
from .state import Resume, has_state, save_state
from .steps import _LossNet, _mean, _with_new_head, dice_counts, looks_like_hu, lr_at, training_precision  # noqa: F401
from .update import WeightUpdate
from .validation import Validation


class Trainer(Validation, WeightUpdate, RunSetup, CardWriter, Refit, FarNegatives, TimeBudget, Resume):
    """Builds data, split, model and optimizer from a :class:`TrainConfig`; :meth:`fit` runs it."""

    def __init__(self, cfg: TrainConfig, progress: Callable[[dict], Any] | None = None, cancel=None,
                 on_step: Callable[[dict], Any] | None = None):
        self._t_start = time.perf_counter()  # a minutes budget counts from here: setup is part of the run
        self._deadline: float | None = None  # perf_counter() by which the run should be done (minutes only)
        self._val_s, self._test_s, self._save_s = 0.0, None, 0.0  # last measured durations (budget reserve)
        self._cut: tuple[int, int] | None = None  # (epoch, steps done) when the budget ended inside an epoch
        self._setup_s = 0.0
        check_config(cfg)
        self.cfg, self.cancel = cfg, cancel
        self.out = Path(cfg.out)
        self.dist = ddp.setup(cfg.device)
        self.device = self.dist.device
        main = self.dist.is_main
        self.progress = progress if main else None
        self.on_step = on_step if main else None
        self.notes: list[str] = []
        self.ema_model = None
        self._load_data()
        self._build_model()
        given = bool(cfg.split or cfg.val_slices or cfg.train_region or cfg.val_region or cfg.test_region)
        # slices and regions the user gives are the stored case's, also when it was turned for the model
        self.split: Split = self._split_for_model(  # and moved onto the start model's spacing (.resampling)
            make_split, given, case_ids=self.case_ids, ignore=self.ignore,
            val_fraction=cfg.val_fraction, seed=cfg.seed, split_file=cfg.split, train_region=cfg.train_region,
            val_region=cfg.val_region, test_region=cfg.test_region, case=cfg.case, val_slices=cfg.val_slices,
            slices=self.model.spatial_dims == 2 and self.ndim == 3, seen=self._seen_rows())
        self.notes.extend(self.split.warnings)
        self._prepare()

    def _seen_rows(self) -> list[int] | None:
        """The slices the start model trained on, when its card says so for this very image (one case)."""
        t = getattr(self.base_card, "training", None) or {}
        if len(self.case_ids) != 1 or not t.get("trained_rows") or t.get("image_sha256") != self.image_digest():
            return None
        return list(t["trained_rows"])

    # -- one step ----------------------------------------------------------------------------
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        xb, yb = self.sampler.sample(self.cfg.batch_size)
        x, y = torch.from_numpy(xb), torch.from_numpy(yb)
        if self.mode == "slices":
            x, y = x[:, :, 0], y[:, 0]
        c = self.cfg
        x, y = augment(x, y, self.gen, self.loss_ignore, intensity_p=c.intensity_aug, p_gamma=c.gamma_aug,
                       p_noise=c.noise_aug, p_affine=c.affine_aug, p_margin=c.margin_aug)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return self.prompter.batch(x, y) if c.prompts else (x, y)  # issue 18: prompt channels, object target

    def _fingerprint(self) -> dict:
        c = self.cfg
        return {"dataset_sha256": self.dataset.manifest_sha256, "split": self.split.as_json(), "arch": self.model.arch,
                "config": self.model.config, "start_model": c.start_model, "patch": self.patch, "batch": c.batch_size,
                "iters_per_epoch": c.iters_per_epoch, "lr": self.base_lr, "seed": c.seed,
                "freeze_encoder": c.freeze_encoder, "normalization": self.norm_spec,
                **({k: v for k, v in self.settings.items() if k != "lr"} if c.start_model else {}),
                **({"ema": c.ema} if c.ema else {}),
                **({"prompt_threshold": c.prompt_threshold} if c.prompt_threshold else {}),
                # left out at their defaults, so runs saved before these options existed still resume
                **{k: getattr(c, k) for k in AUGMENT_PROBABILITIES if getattr(c, k) != getattr(TrainConfig, k)}}

    def _train_epoch(self, epoch: int, lr_of: Callable[[float], float], planned: int | None, t0: float,
                     budget: float | None) -> tuple[list[float], float]:
        """One epoch of steps (``lr_of(fractional epoch)`` sets the rate), then the hard-negative refresh;
        returns the step losses and the last rate. Used by :meth:`fit` and the refit."""
        cfg, losses, lr, step_s = self.cfg, [], 0.0, 0.0
        t_epoch = t_first = time.perf_counter()
        for step in range(cfg.iters_per_epoch):
            if self.cancel is not None and self.cancel.cancelled:
                raise Cancelled("Training cancelled.")
            # the budget ends inside the epoch (not under torchrun: every rank must take the same steps), before a
            # step that would not fit (a 3D step of 46 s on 2 cores took a 1-minute run to 2.9 minutes)
            if step and self._deadline is not None and self.dist.world_size == 1 and self._time_left() <= step_s:
                self._cut = (epoch + 1, step)
                # seconds a step, the first (cold: allocations, caches) left out when another ran: what an epoch takes
                self._step_pace = (time.perf_counter() - t_first) / (step - 1) if step > 1 else \
                    time.perf_counter() - t_epoch
                return losses, lr  # no next epoch follows: no refresh of the hard and far negatives
            lr = lr_of(epoch + (step + 1) / cfg.iters_per_epoch)
            for g in self.opt.param_groups:
                g["lr"] = lr
            t_step = time.perf_counter()
            losses.append(self._step(*self._batch()))
            step_s = time.perf_counter() - t_step
            t_first = time.perf_counter() if not step else t_first
            # (every step of the run's first epoch until said: a machine that gets busy slows it later)
            warning = self._pace_warning((time.perf_counter() - t_first) / step, cfg.iters_per_epoch - step - 1,
                                         epoch) if step else ""
            if self.ema_model is not None:  # steps so far: runs resume at epoch boundaries
                self._update_ema(epoch * cfg.iters_per_epoch + step)
            if self.on_step is not None:
                self.on_step({"epoch": epoch + 1, "epochs": planned, "step": step + 1, "steps": cfg.iters_per_epoch,
                              "loss": float(np.mean(losses)), "lr": lr, "elapsed": time.perf_counter() - t0,
                              "budget": budget, **({"warning": warning} if warning else {})})
        if self.sampler.hard is not None and cfg.refresh_hard and not cfg.prompts:  # clicks: no plain predict
            self._refresh_hard_negatives()
        self._refresh_far()
        return losses, lr

    # -- the run -----------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg, dist, main = self.cfg, self.dist, self.dist.is_main
        self.out.mkdir(parents=True, exist_ok=True)
        keep_folder(self.out)  # (the run's folder from here: kept when it ends, as before the lock made it earlier)
        best_path, log_path = self.out / "best.safetensors", self.out / "training_log.csv"
        budget = cfg.minutes * 60 if cfg.minutes else None
        patience = self.patience()
        planned: int | None = None if budget else cfg.epochs
        s = {"epoch": 0, "best": -1.0, "best_sel": -1e30, "best_per_class": None, "best_epoch": 0, "stale": 0, "before": None,
             "test_before": None, "elapsed": 0.0, "planned": planned,
             "refit_epochs": None if planned is None else self.refit_epochs(planned)}
        fingerprint = self._fingerprint()
        # The start weights are the checkpoint to beat (epoch 0). They stay in memory and are written only
        # at the end, when no epoch beat them and the run was not cancelled: a run cancelled before it
        # learned anything leaves no copy of the start model that looks like a fine-tuned one.
        start_state = ({k: v.detach().clone() for k, v in self.eval_model.state_dict().items()}
                       if cfg.start_model else None)
        resumed = bool(cfg.resume and has_state(self.out))
        if resumed:
            self._resume(s, fingerprint, budget, main)
        elif main:
            before_per_class = None
            if cfg.start_model:
                before_per_class = self._start_eval_cached() or self.evaluate(self.val_parts)
                s["before"] = self._score(before_per_class)
                if self.test_parts:
                    s["test_before"] = self.evaluate(self.test_parts)
            if cfg.precision.lower() == "bf16" and self.device.type == "cpu" and cfg.start_model:
                self._check_bf16(s["before"])
            if s["before"] is not None and self.split.criterion == "val_dice":
                # never worse than the start: its weights are the checkpoint to beat (epoch 0, start_state)
                s.update(best=s["before"], best_sel=s["before"], best_per_class=before_per_class, best_epoch=0)
            with open(log_path, "w", newline="") as f:
                csv.writer(f).writerow(["epoch", "lr", "train_loss", "val_dice", "val_dice_per_class", "best", "seconds"])
        if not resumed and cfg.start_model and self.split.criterion == "val_dice" and dist.world_size > 1:
            # every rank must compare epochs against the same start (early stopping is decided per rank)
            b = dist.broadcast([s["before"] if main else 0.0])[0]
            s.update(best=b, best_sel=b, best_epoch=0, before=s["before"] if main else b)
        if cfg.resume and not resumed:
            self.notes.append(f"nothing to resume in {self.out}; started from the beginning")
        s["precision"] = self.precision
        # the clock runs from the trainer's construction: the setup above is part of the budget
        t0 = self._t_start - s["elapsed"]
        self._setup_s = time.perf_counter() - self._t_start
        if budget is not None:
            self._deadline = t0 + budget
            what = "data, model, the start model's validation and false positives" if cfg.start_model else "data, model"
            self.notes.append(f"setup ({what}) took {self._setup_s:.1f} s of the {_duration(budget)} budget")
        loop_start = time.perf_counter()
        epoch, cancelled = s["epoch"], False
        self.model.train()
        try:
            while True:
                if s["stale"] >= patience:  # (resumed after it stopped early, e.g. killed in its refit: no more)
                    self._refit_gets_the_rest(s, epoch)
                    break
                # the validated epochs; the last s["refit_epochs"] train on the validation slices too (.refit)
                phase1 = None if s["planned"] is None else s["planned"] - (s.get("refit_epochs") or 0)
                phase1 = self._refit_due(s, epoch, phase1)  # nothing to refit yet: its epochs validate instead
                # the time check keeps a validation and the end of the run; the first epoch always runs
                stop = ((phase1 is not None and epoch >= phase1) or self._cut is not None
                        or (budget is not None and epoch > 0 and self._time_left() <= 0))
                if dist.broadcast([float(stop)])[0]:
                    break
                losses, lr = self._train_epoch(
                    epoch, functools.partial(lr_at, total=phase1, base=self.base_lr, warmup=cfg.warmup_epochs),
                    s["planned"], t0, budget)
                epoch += 1
                train_loss = dist.mean(float(np.mean(losses)))
                per_class = self.evaluate(self.val_parts) if main else []
                val = dist.broadcast([self._score(per_class) if main else 0.0])[0]
                if s["planned"] is None:  # minutes: the epochs that fit in the time left, at the first one's pace
                    s["planned"] = int(dist.broadcast([self._plan_epochs(epoch, loop_start, budget)])[0])
                    s["refit_epochs"] = self.refit_epochs(s["planned"])
                # the selection criterion: validation Dice, or (no foreground to validate on) the training loss
                sel = val if self.split.criterion == "val_dice" else -train_loss
                if sel > s.get("best_sel", s["best"]):
                    s.update(best=val, best_sel=sel, best_per_class=per_class, best_epoch=epoch, stale=0)
                    self._far_ready = True  # the model beat its start: its foreground elsewhere means something
                    if main:
                        self._timed_save(best_path, s, epoch, time.perf_counter() - t0, finished=False)
                else:
                    s["stale"] += 1
                now = time.perf_counter() - t0
                s.update(epoch=epoch, elapsed=now)
                if main:
                    with open(log_path, "a", newline="") as f:
                        csv.writer(f).writerow([epoch, f"{lr:.4g}", f"{train_loss:.4f}", f"{val:.4f}",
                                                " ".join(f"{d:.4f}" for d in per_class), f"{s['best']:.4f}", f"{now:.1f}"])
                    save_state(self.out, self.model, self.opt,
                               {"fingerprint": fingerprint, "progress": s, "numpy": self.rng.bit_generator.state,
                                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None},
                               {"augment": self.gen.get_state(), "torch": torch.get_rng_state()}, ema=self.ema_model)
                if self.progress is not None:
                    self.progress({"epoch": epoch, "epochs": s["planned"], "loss": train_loss, "val_dice": val,
                                   "val_dice_per_class": per_class, "best": s["best"], "lr": lr, "elapsed": now,
                                   "budget": budget, "steps_done": self._cut[1] if self._cut else cfg.iters_per_epoch})
                if s["stale"] >= patience:
                    what = "validation Dice" if self.split.criterion == "val_dice" else "training loss"
                    self.notes.append(f"stopped early at epoch {epoch}: no better {what} for {patience} epochs")
                    self._refit_gets_the_rest(s, epoch)
                    break
        except Cancelled:
            cancelled = True
            self.notes.append(f"cancelled during epoch {epoch + 1}"
                              + ("; the best checkpoint so far is kept" if s["best_epoch"] > 0 else ""))
        if not cancelled and main:
            try:
                self._refit(s, best_path, log_path, t0, budget)
                epoch = s["epoch"]
            except Cancelled:
                cancelled = True
        if self._cut is not None:
            self.notes.append(self._cut_note())
        if s["planned"] is not None and epoch < s["planned"] - (0 if s.get("refit_done") else s.get("refit_epochs") or 0) \
                and budget is not None and not cancelled and s["stale"] < patience:
            self.notes.append(f"the time budget ended after {epoch} of {s['planned']} planned epochs")
        card_kept = bool(main and not cancelled and start_state is not None and self.split.criterion == "val_dice"
                         and self._start_with_card_norm(s))  # (its own note says the start model is kept)
        kept_start = s["best_epoch"] == 0 and s["before"] is not None
        nothing_learned = kept_start and self.split.criterion == "val_dice" and (cancelled or self.head_reset)
        if kept_start and self.split.criterion == "val_dice" and epoch > 0 and not nothing_learned and not card_kept:
            self.notes.append(f"no epoch beat the start model's validation Dice ({s['before']:.4f}); the start weights are kept")
        if nothing_learned:
            new = "" if cancelled else ", whose output layer is new (other classes)"
            self.notes.append(f"{'cancelled before any' if cancelled else 'no'} epoch beat the start model's validation "
                              f"Dice ({s['before']:.4f}){new}: nothing was learned and no checkpoint was written")
        dist.barrier()
        result = TrainResult(None if nothing_learned else str(best_path), s["before"], s["best"], None, epoch,
                             time.perf_counter() - t0, self.split.describe(),
                             cancelled, str(log_path), s["test_before"], s["best_per_class"], self.precision,
                             dist.world_size, s["planned"], self._reproduce(s["planned"]), self.notes,
                             validation=self.split.validation, criterion=self.split.criterion,
                             kept_start=kept_start, best_epoch=s["best_epoch"],
                             refit_epochs=s.get("refit_epochs_done", 0), setup_seconds=self._setup_s,
                             class_names=list(self.dataset.label_names))
        if main and not nothing_learned:
            if kept_start and self.split.criterion == "val_dice" and start_state is not None:
                self.eval_model.load_state_dict(start_state)  # no epoch beat the start: its weights are the result
            elif not best_path.exists():
                if cancelled:
                    raise Cancelled("Training cancelled before the first validation; no checkpoint was written.")
                raise DatasetError("Training produced no checkpoint.")
            else:
                from ..checkpoint import load_model

                best_model = load_model(best_path, device=self.device)
                self.eval_model.load_state_dict(best_model.state_dict())
            if self.test_parts:
                result.test_dice = self.evaluate(self.test_parts)
            result.seconds = time.perf_counter() - t0
            self._save(best_path, s, epoch, result.seconds, finished=not cancelled, test=result.test_dice)
        dist.barrier()
        dist.close()
        return result


def train(cfg: TrainConfig, *, progress: Callable[[dict], Any] | None = None, cancel: Any = None, on_step: Callable[[dict], Any] | None = None,
          on_split: Callable[[Split], Any] | None = None) -> TrainResult:
    """Train (or fine-tune, when ``cfg.start_model`` is set) and return the result summary.

    ``progress`` gets a dict after every epoch (epoch, epochs, loss, val_dice, val_dice_per_class, best,
    lr, elapsed, budget); ``on_step`` one after every optimizer step; ``cancel`` is a ``CancelToken``
    (cancelling keeps the best checkpoint so far and returns with ``cancelled=True``); ``on_split`` gets the
    :class:`.split.Split` once made, before the first epoch (its ``describe()`` and ``warnings``: a validation
    that cannot measure is said before the run, not only in the notes). Nothing was learned when no epoch beat
    the start model before a cancel, or at all with a new output layer (other classes; the start with a random
    head is no model): ``kept_start`` is set, no checkpoint is written, ``checkpoint`` is None.
    """
    from ..inference.checks import fine_tuning_advice
    from .quiet import engine_warnings_once

    # (the run segments the same images again and again; a fit warning advises for training, not for a prediction)
    # one run per output folder (run_lock): a second run into it is refused (they replaced each other's model, unsaid)
    with run_lock(cfg.out), engine_warnings_once(), fine_tuning_advice():
        trainer = Trainer(cfg, progress, cancel, on_step)
        if on_split is not None and trainer.dist.is_main:  # the split and its warnings, before the first epoch
            on_split(trainer.split)
        return trainer.fit()
