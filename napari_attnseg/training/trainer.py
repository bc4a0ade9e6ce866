"""One trainer for ``attnseg train`` (from scratch), ``attnseg finetune`` (from a checkpoint) and the
napari Fine-tune panel.

Data: every case of an exported dataset, normalised as the model card says (statistics per whole
case, as at inference). The split (see :mod:`.split`) is by case, by regions of a case, or from a
split file; it is printed, returned and written into the card. Validation segments each whole
validation part with the inference engine (``predict``), so the Dice it reports is the Dice a user
gets, and ignores the ``ignore`` label.

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
A ``minutes`` budget is turned into a number of epochs after the first epoch (its duration is
measured), so the schedule is the one ``--epochs N`` would give and the card can say which N
reproduces the run; the run still stops at the budget if epochs become slower.
"""

from __future__ import annotations

import copy
import csv
import datetime
import json
import math
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._files import describe_machine
from .._version import __version__
from ..checkpoint import ModelCard, save_model
from ..data.dataset import read_dataset
from ..errors import Cancelled, DatasetError, InputError
from ..inference.normalize import apply_stats, compute_stats
from ..inference.precision import PRECISIONS
from ..models.registry import create_model
from . import ddp
from .augment import augment
from .config import AUGMENT_PROBABILITIES, TrainConfig, TrainResult, check_config, fine_tune_defaults
from .losses import total_loss
from .sampling import PatchSampler
from .split import Split, make_split
from .state import has_state, load_state, save_state


def dice_counts(pred: np.ndarray, target: np.ndarray, n_classes: int, ignore: int | None) -> np.ndarray:
    """(intersection, |pred| + |target|) per foreground class over labelled voxels: (K-1, 2)."""
    valid = np.ones(target.shape, bool) if ignore is None else target != ignore
    out = np.zeros((n_classes - 1, 2), np.int64)
    for c in range(1, n_classes):
        p, t = (pred == c) & valid, (target == c) & valid
        out[c - 1] = (int((p & t).sum()), int(p.sum()) + int(t.sum()))
    return out


def _with_new_head(model: nn.Module, n_classes: int) -> nn.Module:
    """The same architecture with ``n_classes`` outputs: every weight whose shape does not depend on the
    number of classes (encoder, decoder, attention gates) copied, the output head(s) freshly initialised."""
    fresh = create_model(model.arch, **{**model.config, "out_channels": n_classes})
    own = fresh.state_dict()
    keep = {k: v for k, v in model.state_dict().items() if k in own and own[k].shape == v.shape}
    fresh.load_state_dict(keep, strict=False)
    fresh.card = model.card
    return fresh.train()


def looks_like_hu(image: np.ndarray) -> bool:
    """A CT in Hounsfield units: integer-valued, air at about -1000 (a good share of voxels below -900)
    and a range reaching past +300."""
    x = np.asarray(image[0] if image.ndim > 3 else image).ravel()
    sample = x[:: max(1, x.size // 200_000)].astype(np.float32)
    if sample.size == 0 or not np.isfinite(sample).all() or np.any(sample != np.round(sample)):
        return False
    lo, hi = float(sample.min()), float(np.percentile(sample, 99.9))
    return -1200 <= lo <= -900 and hi > 300 and float(np.mean(sample < -900)) > 0.02


def _mean(values) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


class _LossNet(nn.Module):
    """model + loss in one forward, so DistributedDataParallel sees the whole training step."""

    def __init__(self, model: nn.Module, ignore_index: int):
        super().__init__()
        self.model, self.ignore_index = model, ignore_index

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return total_loss(self.model.forward_train(x), y, self.ignore_index)


def training_precision(device: torch.device, requested: str) -> str:
    req = (requested or "auto").lower()
    if req not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}; got {requested!r}.")
    if req == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"  # CPU bf16 only when asked for (see the README's measurement)
    if req == "fp16" and device.type != "cuda":
        raise InputError("fp16 training needs a CUDA GPU (loss scaling); use bf16 or fp32 here.")
    if req != "fp32" and device.type == "mps":
        raise InputError("Mixed-precision training is not supported on MPS; use --precision fp32.")
    return req


def lr_at(position: float, total: float | None, base: float, warmup: float) -> float:
    """Learning rate at ``position`` epochs (fractional) of ``total`` (None: not known yet)."""
    warm = warmup if total is None else min(warmup, total / 2)
    if warm > 0 and position < warm:
        return base * position / warm
    if total is None:
        return base
    t = min(max((position - warm) / max(total - warm, 1e-9), 0.0), 1.0)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


class Trainer:
    """Builds data, split, model and optimizer from a :class:`TrainConfig`; :meth:`fit` runs it."""

    def __init__(self, cfg: TrainConfig, progress: Callable[[dict], Any] | None = None, cancel=None,
                 on_step: Callable[[dict], Any] | None = None):
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
        self.split: Split = make_split([lab for _, lab, _ in self.raw], self.case_ids, ignore=self.ignore,
                                       val_fraction=cfg.val_fraction, seed=cfg.seed, split_file=cfg.split,
                                       train_region=cfg.train_region, val_region=cfg.val_region,
                                       test_region=cfg.test_region, case=cfg.case,
                                       slices=self.model.spatial_dims == 2 and self.ndim == 3)
        self.notes.extend(self.split.warnings)
        self._prepare()

    # -- data --------------------------------------------------------------------------------
    def _load_data(self) -> None:
        ds = read_dataset(self.cfg.dataset)
        self.dataset = ds
        self.case_ids = [c.case_id for c in ds.cases]
        self.raw = [c.load() for c in ds.cases]
        self.ignore = ds.ignore_label
        self.loss_ignore = self.ignore if self.ignore is not None else -1  # -1 also marks patch padding
        self.n_classes = len(ds.label_names)
        if self.n_classes < 2:
            raise DatasetError(f"{ds.root}: the label table {ds.label_names} needs a background and at least one class.")
        ndims = {lab.ndim for _, lab, _ in self.raw}
        channels = {img.shape[0] for img, _, _ in self.raw}
        if len(ndims) > 1 or len(channels) > 1:
            raise DatasetError(f"{ds.root}: cases mix 2D and 3D images or channel counts; a dataset holds one kind.")
        any_fg = False
        for cid, (_img, lab, _) in zip(self.case_ids, self.raw):
            labelled = lab != self.ignore if self.ignore is not None else np.ones(lab.shape, bool)
            if not labelled.any():
                raise DatasetError(f"Case {cid} of {ds.root} has no labelled voxels (everything is 'ignore'); "
                                   "review at least one slice or leave the case out.")
            top = int(lab[labelled].max())
            if lab.min() < 0 or top >= self.n_classes:
                raise DatasetError(f"Case {cid} of {ds.root}: label value {top if top >= self.n_classes else lab.min()} "
                                   f"is not in the label table {ds.label_names}.")
            any_fg |= bool((labelled & (lab > 0)).any())
        if not any_fg:
            raise DatasetError(f"No case of {ds.root} has any foreground voxel; there is nothing to learn.")
        self.ndim = ndims.pop()
        self.spacing = list(self.raw[0][2]) if self.raw[0][2] else None

    # -- model -------------------------------------------------------------------------------
    def _build_model(self) -> None:
        cfg = self.cfg
        self.head_reset = False
        self._card_norm = None
        torch.manual_seed(cfg.seed)
        in_ch = self.raw[0][0].shape[0]
        if cfg.start_model:
            from ..checkpoint import load_model

            self.model = load_model(cfg.start_model, device="cpu").train()
            card = self.model.card
            self.norm_spec = cfg.normalization or card.normalization
            self.head_reset = self.model.out_channels != self.n_classes
            if self.head_reset:
                old_shapes = {k: v.shape for k, v in self.model.state_dict().items()}
                self.model = _with_new_head(self.model, self.n_classes)
                self._new_head_names = [k for k, v in self.model.state_dict().items() if old_shapes.get(k) != v.shape]
                self.notes.append(f"the start model predicts {len(card.classes)} classes ({', '.join(card.classes)}), the "
                                  f"dataset has {self.n_classes} ({', '.join(self.dataset.label_names)}): encoder and "
                                  "decoder kept, the output head re-initialised for the dataset's classes")
            if self.model.in_channels != in_ch:
                raise DatasetError(f"The dataset's images have {in_ch} channel(s) but the model {cfg.start_model} "
                                   f"takes {self.model.in_channels}.")
            self.base_card = card
        else:
            dims = cfg.spatial_dims or (3 if self.ndim == 3 and cfg.arch in ("unet", "attention_unet") else 2)
            try:
                self.model = create_model(cfg.arch, spatial_dims=dims, in_channels=in_ch, out_channels=self.n_classes,
                                          **cfg.model_config)
            except (KeyError, ValueError, TypeError) as exc:
                raise InputError(f"Cannot build {cfg.arch!r} with {cfg.model_config}: {exc}") from None
            self.norm_spec = cfg.normalization or {"scheme": "percentile", "lower": 1.0, "upper": 99.0}
            self.base_card = None
        if self.model.spatial_dims > self.ndim:
            raise DatasetError(f"A 3D model cannot train on the 2D images of {self.dataset.root}.")
        if cfg.prompts:  # issue 18: promptable model, simulated clicks per batch, click-based validation
            from ..prompts.training import PromptTraining

            self.prompter = PromptTraining(self)
        if (cfg.normalization is None and cfg.ct_window is not None and self.norm_spec.get("scheme") != "ct"
                and in_ch == 1 and all(looks_like_hu(img) for img, _, _ in self.raw)):
            if cfg.start_model:  # kept only if the start model does at least as well with it (see _prepare)
                self._card_norm = dict(self.norm_spec)
            self.norm_spec = {"scheme": "ct", "window": [float(v) for v in cfg.ct_window]}
            self.notes.append(f"the images are CT in Hounsfield units: normalised with the window "
                              f"[{cfg.ct_window[0]:g}, {cfg.ct_window[1]:g}] HU (clipped) instead of the "
                              + ("start model's scheme" if cfg.start_model else "percentiles"))

    def _prepare(self) -> None:
        cfg, dims = self.cfg, self.model.spatial_dims
        images = [apply_stats(img, compute_stats(img, self.norm_spec, True)) for img, _, _ in self.raw]
        labels = [lab for _, lab, _ in self.raw]

        def arrays(parts):
            return [(images[p.case][(slice(None), *p.slices)], labels[p.case][p.slices]) for p in parts]

        self.train_parts = arrays(self.split.train)
        self._images, self._labels = images, labels
        patch = list(cfg.patch or ([128, 128] if dims == 2 else [64, 64, 64]))
        if len(patch) != dims and not (dims == 2 and len(patch) == 3 and patch[0] == 1):
            raise InputError(f"--patch needs {dims} sizes for a {dims}D model; got {patch}.")
        patch = patch[-dims:]
        # never larger than the biggest training part (the model pads to its divisor itself)
        extent = np.max([lab.shape[-dims:] for _, lab in self.train_parts], axis=0)
        patch = [int(min(p, e)) for p, e in zip(patch, extent)]
        self.tile = patch
        self.patch = [1, *patch] if (dims == 2 and self.ndim == 3) else patch
        self.mode = "slices" if (dims == 2 and self.ndim == 3) else None
        self.val_parts, self.test_parts = self._eval_parts(self.split.val), self._eval_parts(self.split.test)
        self.model.to(self.device)
        if self._card_norm is not None:
            self._choose_ct_or_card(arrays)
        if cfg.freeze_encoder:
            if not self.model.encoder_prefixes:
                raise InputError(f"{self.model.arch} does not name its encoder; fine-tune without --freeze-encoder.")
            for name, p in self.model.named_parameters():
                if name.startswith(self.model.encoder_prefixes):
                    p.requires_grad_(False)
        self.settings = fine_tune_defaults(cfg)
        self.base_lr = self.settings["lr"]
        self.start_weights = None
        if self.settings["l2sp"] > 0 and cfg.start_model:
            # L2-SP: the start values of every weight that came from the start model (not a new head)
            fresh = set(self._new_head_names) if self.head_reset else set()
            self.start_weights = {n: p.detach().clone() for n, p in self.model.named_parameters()
                                  if p.requires_grad and n not in fresh}
        if self.settings["freeze_bn"] and cfg.start_model:
            bns = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                   and m.running_var is not None]
            if bns and any(not torch.all(m.running_var == 1) or not torch.all(m.running_mean == 0) for m in bns):
                self.notes.append("batch-norm statistics frozen at the start model's")
            else:  # an untrained start model (or no batch norm): nothing worth keeping
                self.settings["freeze_bn"] = False
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=self.base_lr,
                                     weight_decay=cfg.weight_decay)
        self.precision = training_precision(self.device, cfg.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.net = self.dist.wrap(_LossNet(self.model, self.loss_ignore))
        # An exponential moving average of the weights (and BN statistics) is what is validated and
        # saved when cfg.ema > 0: it smooths the epoch-to-epoch swings of the validation Dice.
        self.ema_model = None
        if cfg.ema:
            self.ema_model = copy.deepcopy(self.model).eval()
            for p in self.ema_model.parameters():
                p.requires_grad_(False)
        rank_seed = cfg.seed + 1000 * self.dist.rank
        self.rng = np.random.default_rng(rank_seed)
        self.gen = torch.Generator().manual_seed(rank_seed)
        hard = None
        if self.settings["hard_negatives"] > 0 and cfg.start_model:
            hard = self._hard_negatives()
        self.sampler = PatchSampler([x for x, _ in self.train_parts], [y for _, y in self.train_parts], self.patch,
                                    self.rng, fg_fraction=cfg.fg_fraction, ignore_index=self.loss_ignore,
                                    hard=hard, hard_fraction=self.settings["hard_negatives"])

    def _hard_negatives(self) -> list[np.ndarray]:
        """Per training part, the labelled background voxels the start model calls foreground (its false
        positives, e.g. the ones a person erased), on labelled slices only."""
        from ..inference import predict

        self.model.eval()
        out, total = [], 0
        for img, lab in self.train_parts:
            labelled = lab != self.loss_ignore
            if self.mode == "slices":
                rows = np.flatnonzero(labelled.reshape(lab.shape[0], -1).any(1))
                coords = []
                for z in rows:
                    pred = predict(self.model, img[:, z] if img.shape[0] > 1 else img[0, z], device=self.device,
                                   normalization={"scheme": "none"}, return_probabilities=False, tile=self.tile)
                    fp = np.argwhere((np.asarray(pred.labels) > 0) & (lab[z] == 0))
                    coords.append(np.concatenate([np.full((len(fp), 1), z), fp], 1))
                found = np.concatenate(coords) if coords else np.zeros((0, lab.ndim), int)
            else:
                pred = predict(self.model, img if img.shape[0] > 1 else img[0], mode=self.mode, device=self.device,
                               normalization={"scheme": "none"}, return_probabilities=False, tile=self.tile)
                found = np.argwhere((np.asarray(pred.labels) > 0) & (lab == 0))
            out.append(found)
            total += len(found)
        self.model.train()
        self.notes.append(f"{total} voxels of labelled background the start model called foreground are "
                          f"oversampled as hard negatives ({self.settings['hard_negatives']:.0%} of patches)")
        return out

    def _choose_ct_or_card(self, arrays) -> None:
        """Fine-tuning on CT: the start model's validation Dice with the CT window and with its card's
        normalisation; the CT window only when it is at least as good (a model trained on CT with its card's
        scheme keeps it)."""
        ct = self._score(self.evaluate(self.val_parts)) if self.dist.is_main else 0.0
        images = [apply_stats(img, compute_stats(img, self._card_norm, True)) for img, _, _ in self.raw]
        saved = (self._images, self.val_parts)
        self._images = images
        self.val_parts = self._eval_parts(self.split.val)
        card = self._score(self.evaluate(self.val_parts)) if self.dist.is_main else 0.0
        use_card = self.dist.broadcast([float(card > ct)])[0] > 0.5
        if use_card:
            self.norm_spec = self._card_norm
            self.train_parts = [(images[p.case][(slice(None), *p.slices)], self._labels[p.case][p.slices])
                                for p in self.split.train]
            self.test_parts = self._eval_parts(self.split.test)
            self.notes[:] = [n for n in self.notes if "Hounsfield" not in n]
            self.notes.append(f"CT in Hounsfield units: the start model's validation Dice is higher with its own "
                              f"normalisation ({card:.4f}) than with the CT window ({ct:.4f}); its own is kept")
        else:
            self._images, self.val_parts = saved
            if self.notes and "Hounsfield" in " ".join(self.notes):
                self.notes.append(f"start model's validation Dice: CT window {ct:.4f}, its own normalisation {card:.4f}")

    # -- evaluation --------------------------------------------------------------------------
    def _eval_parts(self, parts) -> list[tuple[np.ndarray, np.ndarray, tuple[slice, ...]]]:
        """(image with context, labels of the part, where the part lies in that image) per part.

        A validation or test part is segmented as a user would segment it: inside the whole image, so
        the model sees the image around it (half a tile each side) as it does at inference. Only the
        part's labels are scored; the training patches never read the image of a held-out part."""
        out = []
        dims = len(self.tile)
        for p in parts:
            img, lab = self._images[p.case], self._labels[p.case]
            margin = [0] * (lab.ndim - dims) + [t // 2 for t in self.tile]
            outer, inner = [], []
            for sl, m, n in zip(p.slices, margin, lab.shape):
                start, stop, _ = sl.indices(n)
                lo, hi = max(start - m, 0), min(stop + m, n)
                outer.append(slice(lo, hi))
                inner.append(slice(start - lo, stop - lo))
            out.append((img[(slice(None), *outer)], lab[p.slices], tuple(inner)))
        return out

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated and saved: the moving average when there is one."""
        return self.ema_model if self.ema_model is not None else self.model

    def _update_ema(self, steps: int) -> None:
        # the decay ramps up over the first steps, so the average does not remember the random start
        d = min(self.cfg.ema, (1 + steps) / (10 + steps))
        with torch.no_grad():
            for e, p in zip(self.ema_model.parameters(), self.model.parameters()):
                e.lerp_(p.detach(), 1 - d)
            for e, b in zip(self.ema_model.buffers(), self.model.buffers()):
                if e.is_floating_point():
                    e.lerp_(b, 1 - d)
                else:
                    e.copy_(b)

    def evaluate(self, parts, precision: str = "fp32") -> list[float]:
        """Dice per foreground class over whole parts (segmented in context), through the inference engine."""
        from ..inference import predict

        if self.cfg.prompts:  # issue 18: Dice after robot clicks instead
            return self.prompter.evaluate(self.eval_model, parts)
        # counts pooled over the parts of a case (held-out slices are one validation), Dice averaged over cases
        counts: dict[int, np.ndarray] = {}
        for (img, lab, inner), case in zip(parts, self._part_cases(parts)):
            pred = predict(self.eval_model, img if img.shape[0] > 1 else img[0], mode=self.mode, device=self.device,
                           precision=precision, normalization={"scheme": "none"}, return_probabilities=False,
                           tile=self.tile, cancel=self.cancel)
            c = dice_counts(np.asarray(pred.labels)[inner], lab, self.n_classes, self.ignore)
            counts[case] = counts[case] + c if case in counts else c
        self.model.train()
        per_case = [[float("nan") if d == 0 else 2.0 * i / d for i, d in cnt] for cnt in counts.values()]
        return [_mean(c) for c in zip(*per_case)]

    def _part_cases(self, parts) -> list[int]:
        src = self.split.val if parts is self.val_parts else self.split.test if parts is self.test_parts else None
        return [p.case for p in src] if src is not None and len(src) == len(parts) else list(range(len(parts)))

    @staticmethod
    def _score(per_class: list[float]) -> float:
        m = _mean(per_class)
        return 1.0 if math.isnan(m) else m  # no class present in labels or prediction: they agree

    # -- one step ----------------------------------------------------------------------------
    def _step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16,
                             enabled=self.precision != "fp32")
        if self.settings["freeze_bn"] and self.cfg.start_model:
            for m in self.model.modules():  # running statistics stay the start model's (affine still learns)
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        with amp:
            loss = self.net(x, y)
        if self.start_weights is not None:
            pull = sum(((p - self.start_weights[n]) ** 2).sum() for n, p in self.model.named_parameters()
                       if n in self.start_weights)
            loss = loss + self.settings["l2sp"] * pull
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        return float(loss.detach())

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
                # left out at their defaults, so runs saved before these options existed still resume
                **{k: getattr(c, k) for k in AUGMENT_PROBABILITIES if getattr(c, k) != getattr(TrainConfig, k)}}

    # -- the run -----------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg, dist, main = self.cfg, self.dist, self.dist.is_main
        self.out.mkdir(parents=True, exist_ok=True)
        best_path, log_path = self.out / "best.safetensors", self.out / "training_log.csv"
        budget = cfg.minutes * 60 if cfg.minutes else None
        planned: int | None = None if budget else cfg.epochs
        s = {"epoch": 0, "best": -1.0, "best_sel": -1e30, "best_per_class": None, "best_epoch": 0, "stale": 0, "before": None,
             "test_before": None, "elapsed": 0.0, "planned": planned}
        fingerprint = self._fingerprint()
        resumed = False
        if cfg.resume and has_state(self.out):
            info, rng = load_state(self.out, self.model, self.opt, ema=self.ema_model)
            if info.get("fingerprint") != json.loads(json.dumps(fingerprint)):
                raise DatasetError(f"{self.out} holds the state of a different run (dataset, split, model or settings "
                                   "differ); resume with the same options or start again without --resume.")
            s.update(info["progress"])
            if budget is None:
                s["planned"] = cfg.epochs  # resuming with more (or fewer) epochs is allowed
            if main and "numpy" in info:
                self.rng.bit_generator.state = info["numpy"]
                self.gen.set_state(rng["augment"])
                torch.set_rng_state(rng["torch"])
            else:  # other ranks: a fresh stream per (rank, epoch)
                self.rng = self.sampler.rng = np.random.default_rng([cfg.seed, dist.rank, s["epoch"]])
            if info.get("scaler"):
                self.scaler.load_state_dict(info["scaler"])
            resumed = True
        elif main:
            before_per_class = None
            if cfg.start_model:
                before_per_class = self.evaluate(self.val_parts)
                s["before"] = self._score(before_per_class)
                if self.test_parts:
                    s["test_before"] = self.evaluate(self.test_parts)
            if cfg.precision.lower() == "bf16" and self.device.type == "cpu" and cfg.start_model:
                self._check_bf16(s["before"])
            if s["before"] is not None and self.split.criterion == "val_dice":
                # never worse than the start: its weights are the checkpoint to beat (epoch 0)
                s.update(best=s["before"], best_sel=s["before"], best_per_class=before_per_class, best_epoch=0)
                self._save(best_path, s, 0, 0.0, finished=False)
            with open(log_path, "w", newline="") as f:
                csv.writer(f).writerow(["epoch", "lr", "train_loss", "val_dice", "val_dice_per_class", "best", "seconds"])
        if not resumed and cfg.start_model and self.split.criterion == "val_dice" and dist.world_size > 1:
            # every rank must compare epochs against the same start (early stopping is decided per rank)
            b = dist.broadcast([s["before"] if main else 0.0])[0]
            s.update(best=b, best_sel=b, best_epoch=0, before=s["before"] if main else b)
        if cfg.resume and not resumed:
            self.notes.append(f"nothing to resume in {self.out}; started from the beginning")
        s["precision"] = self.precision
        t0 = time.perf_counter() - s["elapsed"]
        epoch, cancelled = s["epoch"], False
        self.model.train()
        try:
            while True:
                elapsed = time.perf_counter() - t0
                stop = (s["planned"] is not None and epoch >= s["planned"]) or (budget is not None and elapsed >= budget)
                if dist.broadcast([float(stop)])[0]:
                    break
                losses = []
                for step in range(cfg.iters_per_epoch):
                    if self.cancel is not None and self.cancel.cancelled:
                        raise Cancelled("Training cancelled.")
                    lr = lr_at(epoch + (step + 1) / cfg.iters_per_epoch, s["planned"], self.base_lr, cfg.warmup_epochs)
                    for g in self.opt.param_groups:
                        g["lr"] = lr
                    losses.append(self._step(*self._batch()))
                    if self.ema_model is not None:  # steps so far: runs resume at epoch boundaries
                        self._update_ema(epoch * cfg.iters_per_epoch + step)
                    if self.on_step is not None:
                        self.on_step({"epoch": epoch + 1, "epochs": s["planned"], "step": step + 1,
                                      "steps": cfg.iters_per_epoch, "loss": float(np.mean(losses)), "lr": lr,
                                      "elapsed": time.perf_counter() - t0, "budget": budget})
                epoch += 1
                train_loss = dist.mean(float(np.mean(losses)))
                per_class = self.evaluate(self.val_parts) if main else []
                val = dist.broadcast([self._score(per_class) if main else 0.0])[0]
                if s["planned"] is None:  # minutes: fix the number of epochs from the first one's duration
                    first = time.perf_counter() - t0
                    s["planned"] = int(dist.broadcast([max(1, math.floor(budget / max(first, 1e-6)))])[0])
                # the selection criterion: validation Dice, or (no foreground to validate on) the training loss
                sel = val if self.split.criterion == "val_dice" else -train_loss
                if sel > s.get("best_sel", s["best"]):
                    s.update(best=val, best_sel=sel, best_per_class=per_class, best_epoch=epoch, stale=0)
                    if main:
                        self._save(best_path, s, epoch, time.perf_counter() - t0, finished=False)
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
                                   "budget": budget})
                if s["stale"] >= cfg.patience:
                    what = "validation Dice" if self.split.criterion == "val_dice" else "training loss"
                    self.notes.append(f"stopped early at epoch {epoch}: no better {what} for {cfg.patience} epochs")
                    break
        except Cancelled:
            cancelled = True
            self.notes.append(f"cancelled during epoch {epoch + 1}; the best checkpoint so far is kept")
        seconds = time.perf_counter() - t0
        if s["planned"] is not None and epoch < s["planned"] and budget is not None and not cancelled \
                and s["stale"] < cfg.patience:
            self.notes.append(f"the time budget ended after {epoch} of {s['planned']} planned epochs")
        if s["best_epoch"] == 0 and s["before"] is not None and self.split.criterion == "val_dice" and epoch > 0:
            self.notes.append(f"no epoch beat the start model's validation Dice ({s['before']:.4f}); the start "
                              "weights are kept" + (" (with the re-initialised head)" if self.head_reset else ""))
        dist.barrier()
        result = TrainResult(str(best_path), s["before"], s["best"], None, epoch, seconds, self.split.describe(),
                             cancelled, str(log_path), s["test_before"], s["best_per_class"], self.precision,
                             dist.world_size, s["planned"], self._reproduce(s["planned"]), self.notes,
                             validation=self.split.validation, criterion=self.split.criterion,
                             kept_start=s["best_epoch"] == 0 and s["before"] is not None, best_epoch=s["best_epoch"])
        if main:
            if not best_path.exists():
                if cancelled:
                    raise Cancelled("Training cancelled before the first validation; no checkpoint was written.")
                raise DatasetError("Training produced no checkpoint.")
            from ..checkpoint import load_model

            best_model = load_model(best_path, device=self.device)
            self.eval_model.load_state_dict(best_model.state_dict())
            if self.test_parts:
                result.test_dice = self.evaluate(self.test_parts)
            self._save(best_path, s, epoch, seconds, finished=not cancelled, test=result.test_dice)
        dist.barrier()
        dist.close()
        return result

    def _check_bf16(self, before_fp32: float | None) -> None:
        """bf16 on the CPU: keep it only if the start model's validation Dice under bf16 stays within 0.01."""
        if before_fp32 is None:
            return
        bf = self._score(self.evaluate(self.val_parts, precision="bf16"))
        if abs(bf - before_fp32) > 0.01:
            self.precision = "fp32"
            self.notes.append(f"bf16 changed the start model's validation Dice ({before_fp32:.4f} -> {bf:.4f}); "
                              "trained in fp32")

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
        return " ".join(shlex.quote(w) for w in [*out, "--epochs", str(planned)])

    def _save(self, path: Path, s: dict, epochs: int, seconds: float, finished: bool, test=None) -> None:
        cfg, base = self.cfg, self.base_card
        metrics: dict[str, Any] = {"val_dice": s["best"], "val_dice_per_class": s["best_per_class"]}
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
            spacing=self.spacing[-self.model.spatial_dims:] if self.spacing else None,
            tile=[int(p) for p in self.tile], overlap=0.25,
            training={
                "dataset": str(cfg.dataset), "dataset_manifest_sha256": self.dataset.manifest_sha256,
                "split": self.split.describe(), "split_parts": self.split.as_json(),
                "validation": self.split.validation, "selection": self.split.criterion,
                "head_reinitialised": self.head_reset,
                "epochs": epochs, "epochs_planned": s["planned"], "best_epoch": s["best_epoch"],
                "seconds": round(seconds, 1), "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "machine": describe_machine(), "device": str(self.device), "precision": self.precision,
                "world_size": self.dist.world_size, "command": cfg.command or None,
                "reproduce": self._reproduce(s["planned"]), "start_model": cfg.start_model,
                "start_model_sha256": getattr(base, "weights_sha256", None) if base else None,
                "val_dice_before": s["before"], "val_dice_after": s["best"], "seed": cfg.seed,
                "code_version": __version__, "config": {k: v for k, v in asdict(cfg).items() if k != "command"},
                "finished": finished, "notes": list(self.notes),
            },
            metrics=metrics,
        )
        save_model(self.eval_model, path, card)
        self.model.train()


def train(cfg: TrainConfig, *, progress: Callable[[dict], Any] | None = None, cancel: Any = None, on_step: Callable[[dict], Any] | None = None) -> TrainResult:
    """Train (or fine-tune, when ``cfg.start_model`` is set) and return the result summary.

    ``progress`` gets a dict after every epoch (epoch, epochs, loss, val_dice, val_dice_per_class, best,
    lr, elapsed, budget); ``on_step`` one after every optimizer step; ``cancel`` is a ``CancelToken``
    (cancelling keeps the best checkpoint so far and returns with ``cancelled=True``).
    """
    return Trainer(cfg, progress, cancel, on_step).fit()
