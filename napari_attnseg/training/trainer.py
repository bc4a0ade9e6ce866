"""One trainer for ``attnseg train`` (from scratch), ``attnseg finetune`` (from a checkpoint) and the
napari Fine-tune panel.

Data: every case of an exported dataset, normalised as the model card says (statistics per whole
case, as at inference). Splits: by case when there are several; with one case, by regions given as
array-index boxes (``train_region``/``val_region``/``test_region``) or, by default, disjoint slabs
along the first axis. The split used is recorded in the card and the result.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._files import describe_machine
from .._version import __version__
from ..checkpoint import ModelCard, save_model
from ..data.dataset import read_dataset
from ..devices import resolve_device
from ..errors import Cancelled, DatasetError, InputError
from ..inference import predict
from ..inference.normalize import apply_stats, compute_stats
from ..models.registry import create_model
from .augment import augment
from .losses import dice_ce_loss, dice_per_class
from .sampling import PatchSampler, parse_region
from .state import load_state, save_state


@dataclass
class TrainConfig:
    dataset: str
    out: str
    arch: str = "attention_unet"
    model_config: dict[str, Any] = field(default_factory=dict)
    start_model: str | None = None  # fine-tune from this checkpoint / bundled name
    spatial_dims: int | None = None  # default: 3 for volumes with a 3D-capable arch, else 2
    epochs: int = 30
    minutes: float | None = None
    iters_per_epoch: int = 25
    batch_size: int = 8
    patch: list[int] | None = None
    lr: float | None = None
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    patience: int = 10
    val_fraction: float = 0.2
    train_region: str | None = None
    val_region: str | None = None
    test_region: str | None = None
    freeze_encoder: bool = False
    normalization: dict[str, Any] | None = None
    device: str = "auto"
    precision: str = "fp32"
    seed: int = 0
    name: str = ""
    description: str = ""
    resume: bool = False
    command: str = ""


@dataclass
class TrainResult:
    checkpoint: str
    val_dice_before: float | None
    val_dice_after: float
    test_dice: list[float] | None
    epochs: int
    seconds: float
    split: str
    cancelled: bool = False
    log: str = ""


def _mean(values) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


class Trainer:
    def __init__(self, cfg: TrainConfig, progress: Callable[[dict], Any] | None = None, cancel=None):
        self.cfg, self.progress, self.cancel = cfg, progress, cancel
        self.out = Path(cfg.out)
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self._load_data()
        self._build_model()

    # ------------------------------------------------------------------------------------------
    def _load_data(self) -> None:
        cfg = self.cfg
        ds = read_dataset(cfg.dataset)
        self.dataset = ds
        loaded = [c.load() for c in ds.cases]
        self.ignore = ds.ignore_label
        self.loss_ignore = self.ignore if self.ignore is not None else -1  # -1 marks padding
        self.n_classes = len(ds.label_names)
        self.spacing = list(loaded[0][2])
        ndim = loaded[0][1].ndim
        norm = cfg.normalization
        if norm is None and cfg.start_model:
            norm = None  # taken from the starting model's card below
        self.norm_spec = norm or {"scheme": "percentile", "lower": 1.0, "upper": 99.0}
        any_fg = False
        for cid, (_img, lab, _) in zip([c.case_id for c in ds.cases], loaded):
            labelled = lab != self.ignore if self.ignore is not None else np.ones(lab.shape, bool)
            if not labelled.any():
                raise DatasetError(f"Case {cid} of {ds.root} has no labelled voxels (everything is 'ignore').")
            any_fg |= bool((labelled & (lab > 0)).any())
            if lab.max() >= self.n_classes and (self.ignore is None or lab.max() != self.ignore):
                raise DatasetError(f"Case {cid}: label value {lab.max()} is not in the label table {ds.label_names}.")
        if not any_fg:
            raise DatasetError(f"No case of {ds.root} has any foreground voxel; there is nothing to learn.")
        self.raw = loaded
        self.ndim = ndim

    def _normalised(self, norm_spec) -> list[np.ndarray]:
        return [apply_stats(img, compute_stats(img, norm_spec, True)) for img, _, _ in self.raw]

    def _split(self, images) -> None:
        cfg = self.cfg
        labels = [lab for _, lab, _ in self.raw]
        self.train, self.val, self.test = [], [], []
        if len(images) > 1 and not cfg.train_region:
            n_val = max(1, int(round(len(images) * cfg.val_fraction)))
            order = self.rng.permutation(len(images))
            val_ids, train_ids = set(order[:n_val].tolist()), order[n_val:].tolist()
            self.train = [(images[i], labels[i]) for i in train_ids]
            self.val = [(images[i], labels[i]) for i in sorted(val_ids)]
            ids = [c.case_id for c in self.dataset.cases]
            self.split = f"by case: train {[ids[i] for i in train_ids]}, validation {[ids[i] for i in sorted(val_ids)]}"
            return
        img, lab = images[0], labels[0]
        tr = [parse_region(t, self.ndim) for t in cfg.train_region.split(";")] if cfg.train_region else None
        va = parse_region(cfg.val_region, self.ndim)
        te = parse_region(cfg.test_region, self.ndim)
        if tr is None or va is None:  # disjoint slabs along the first axis
            n = lab.shape[0]
            n_val = max(1, int(round(n * cfg.val_fraction)))
            tr = tr or [(slice(0, n - n_val),) + (slice(None),) * (self.ndim - 1)]
            va = va or (slice(n - n_val, n),) + (slice(None),) * (self.ndim - 1)
        self.train = [(img[(slice(None), *r)], lab[r]) for r in tr]
        self.val = [(img[(slice(None), *va)], lab[va])]
        if te is not None:
            self.test = [(img[(slice(None), *te)], lab[te])]
        fmt = lambda r: ",".join(f"{s.start or 0}:{'' if s.stop is None else s.stop}" for s in r)  # noqa: E731
        self.split = (f"one case ({self.dataset.cases[0].case_id}) by regions: train [{'; '.join(fmt(r) for r in tr)}], "
                      f"validation [{fmt(va)}]" + (f", test [{fmt(te)}]" if te is not None else ""))
        if not all(t[1].size for t in self.train) or not self.val[0][1].size:
            raise DatasetError(f"Empty training or validation region ({self.split}).")

    def _build_model(self) -> None:
        cfg = self.cfg
        if cfg.start_model:
            from ..checkpoint import load_model

            self.model = load_model(cfg.start_model, device="cpu").train()
            card = self.model.card
            self.norm_spec = cfg.normalization or card.normalization
            if self.model.out_channels != self.n_classes:
                raise DatasetError(f"The dataset has {self.n_classes} classes ({self.dataset.label_names}) but the model "
                                   f"{cfg.start_model} predicts {self.model.out_channels}.")
            self.base_card = card
        else:
            dims = cfg.spatial_dims or (3 if self.ndim == 3 and cfg.arch in ("unet", "attention_unet") else 2)
            self.model = create_model(cfg.arch, spatial_dims=dims, in_channels=self.raw[0][0].shape[0],
                                      out_channels=self.n_classes, **cfg.model_config)
            self.base_card = None
        self.images = self._normalised(self.norm_spec)
        self._split(self.images)
        dims = self.model.spatial_dims
        patch = cfg.patch or ([128, 128] if dims == 2 else [64, 64, 64])
        if dims == 2 and self.ndim == 3:
            patch = [1, *patch[-2:]]
        self.patch = [int(p) for p in patch]
        self.mode = "slices" if (dims == 2 and self.ndim == 3) else None
        self.model.to(self.device)
        if cfg.freeze_encoder:
            for name, p in self.model.named_parameters():
                if name.startswith(self.model.encoder_prefixes):
                    p.requires_grad_(False)
        lr = cfg.lr or (1e-4 if cfg.start_model else 1e-3)
        self.base_lr = lr
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=lr,
                                     weight_decay=cfg.weight_decay)
        self.sampler = PatchSampler([x for x, _ in self.train], [y for _, y in self.train], self.patch, self.rng,
                                    ignore_index=self.loss_ignore)

    # ------------------------------------------------------------------------------------------
    def evaluate(self, pairs) -> list[float]:
        """Dice per foreground class over the given (image, labels) regions, via the inference engine."""
        per_case = []
        for img, lab in pairs:
            pred = predict(self.model, img if img.shape[0] > 1 else img[0], mode=self.mode, device=self.device,
                           precision="fp32", normalization={"scheme": "none"}, return_probabilities=False,
                           tile=self.patch[-self.model.spatial_dims:])
            per_case.append(dice_per_class(np.asarray(pred.labels), lab, self.n_classes, self.ignore))
        self.model.train()
        return [_mean(c) for c in zip(*per_case)]

    def _lr_at(self, progress: float) -> float:
        warm = self.cfg.warmup_epochs / max(self.total_epochs, 1)
        if progress < warm:
            return self.base_lr * max(progress / warm, 0.05)
        t = (progress - warm) / max(1 - warm, 1e-6)
        return self.base_lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        out = self.model.forward_train(x)
        loss = out.main_weight * dice_ce_loss(out.logits, y, self.loss_ignore) if out.main_weight else 0.0
        for w, h in out.heads:
            loss = loss + w * dice_ce_loss(h, y, self.loss_ignore)
        loss = loss + out.aux_loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 2.0)
        self.opt.step()
        return float(loss.detach())

    def fit(self) -> TrainResult:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        self.total_epochs = cfg.epochs if cfg.minutes is None else 10**6
        best_path = self.out / "best.safetensors"
        log_path = self.out / "training_log.csv"
        start_epoch, best, before, elapsed_before = 0, -1.0, None, 0.0
        if cfg.resume and (self.out / "state.json").exists():
            st = load_state(self.out, self.model, self.opt)
            start_epoch, best, before, elapsed_before = st["epoch"], st["best"], st["before"], st["elapsed"]
        else:
            if cfg.start_model:
                before = _mean(self.evaluate(self.val))
            with open(log_path, "w", newline="") as f:
                csv.writer(f).writerow(["epoch", "lr", "train_loss", "val_dice", "seconds"])
        t0 = time.perf_counter() - elapsed_before
        budget = cfg.minutes * 60 if cfg.minutes else None
        epoch, stale, cancelled = start_epoch, 0, False
        self.model.train()
        try:
            while True:
                elapsed = time.perf_counter() - t0
                if (budget is None and epoch >= cfg.epochs) or (budget is not None and elapsed >= budget):
                    break
                losses = []
                for _ in range(cfg.iters_per_epoch):
                    if self.cancel is not None and self.cancel.cancelled:
                        raise Cancelled("Training cancelled.")
                    prog = (epoch + len(losses) / cfg.iters_per_epoch) / cfg.epochs if budget is None else (time.perf_counter() - t0) / budget
                    if budget is not None:
                        self.total_epochs = max(epoch + 1, 1)
                        prog = min(prog, 1.0)
                    for g in self.opt.param_groups:
                        g["lr"] = self._lr_at(prog) if budget is None else self._lr_at_time(prog)
                    xb, yb = self.sampler.sample(cfg.batch_size)
                    x, y = torch.from_numpy(xb), torch.from_numpy(yb)
                    if self.mode == "slices":
                        x, y = x[:, :, 0], y[:, 0]
                    x, y = augment(x, y, self.gen, self.loss_ignore)
                    losses.append(self._step(x.to(self.device), y.to(self.device)))
                epoch += 1
                val = _mean(self.evaluate(self.val))
                if val > best:
                    best, stale = val, 0
                    self._save(best_path, best, before, epoch, time.perf_counter() - t0, partial=True)
                else:
                    stale += 1
                lr = self.opt.param_groups[0]["lr"]
                with open(log_path, "a", newline="") as f:
                    csv.writer(f).writerow([epoch, f"{lr:.3g}", f"{np.mean(losses):.4f}", f"{val:.4f}", f"{time.perf_counter() - t0:.1f}"])
                save_state(self.out, self.model, self.opt, {"epoch": epoch, "best": best, "before": before,
                                                            "elapsed": time.perf_counter() - t0})
                if self.progress is not None:
                    self.progress({"epoch": epoch, "epochs": cfg.epochs if budget is None else None,
                                   "loss": float(np.mean(losses)), "val_dice": val, "best": best,
                                   "elapsed": time.perf_counter() - t0, "budget": budget})
                if stale >= cfg.patience:
                    break
        except Cancelled:
            cancelled = True
        seconds = time.perf_counter() - t0
        if not best_path.exists():
            if cancelled:
                raise Cancelled("Training cancelled before the first validation; no checkpoint was written.")
            raise DatasetError("Training produced no checkpoint.")
        from ..checkpoint import load_model

        self.model = load_model(best_path, device=self.device).train()
        test = self.evaluate(self.test) if self.test else None
        self._save(best_path, best, before, epoch, seconds, test=test)
        return TrainResult(str(best_path), before, best, test, epoch, seconds, self.split, cancelled, str(log_path))

    def _lr_at_time(self, fraction: float) -> float:
        warm = 0.05
        if fraction < warm:
            return self.base_lr * max(fraction / warm, 0.05)
        t = (fraction - warm) / (1 - warm)
        return self.base_lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    def _save(self, path: Path, best: float, before, epochs: int, seconds: float, partial: bool = False, test=None) -> None:
        cfg = self.cfg
        base = self.base_card
        card = ModelCard(
            arch=self.model.arch, config=dict(self.model.config),
            name=cfg.name or (base.name + "-finetuned" if base else self.model.arch),
            description=cfg.description or (base.description if base else f"{self.model.arch} trained on {Path(cfg.dataset).name}"),
            classes=list(self.dataset.label_names), normalization=dict(self.norm_spec),
            spacing=self.spacing[-self.model.spatial_dims:] if self.spacing else None,
            tile=[int(p) for p in self.patch[-self.model.spatial_dims:]], overlap=0.25,
            training={
                "dataset": str(cfg.dataset), "dataset_manifest_sha256": self.dataset.manifest_sha256,
                "split": self.split, "epochs": epochs, "seconds": round(seconds, 1), "machine": describe_machine(),
                "command": cfg.command or " ".join(sys.argv), "start_model": cfg.start_model,
                "val_dice_before": before, "val_dice_after": best, "seed": cfg.seed, "code_version": __version__,
                "config": {k: v for k, v in asdict(cfg).items() if k not in ("command",)}, "finished": not partial,
            },
            metrics={"val_dice": best, **({"test_dice_per_class": test, "test_dice": _mean(test)} if test else {})},
        )
        was_training = self.model.training
        save_model(self.model, path, card)
        self.model.train(was_training)


def train(cfg: TrainConfig, progress=None, cancel=None) -> TrainResult:
    """Train (or fine-tune, when ``cfg.start_model`` is set) and return the result summary."""
    if cfg.epochs < 1 and not cfg.minutes:
        raise InputError("Give a budget: epochs >= 1 or minutes > 0.")
    return Trainer(cfg, progress, cancel).fit()


def result_json(result: TrainResult) -> str:
    return json.dumps(asdict(result), indent=2)
