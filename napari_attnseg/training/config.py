"""What a training run is asked to do (:class:`TrainConfig`) and what it reports (:class:`TrainResult`);
plain data, no torch, checked by :func:`check_config` before anything is loaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

AUGMENT_PROBABILITIES = ("intensity_aug", "gamma_aug", "noise_aug", "affine_aug", "margin_aug")  # TrainConfig fields, each a chance per patch


@dataclass
class TrainConfig:
    """Everything a run depends on (the card stores it; the same config and seed give the same model)."""

    dataset: str
    out: str
    arch: str = "attention_unet"
    model_config: dict[str, Any] = field(default_factory=dict)
    start_model: str | None = None  # fine-tune from this checkpoint / bundled name
    spatial_dims: int | None = None  # default: 3 for volumes with a 3D-capable arch, else 2
    epochs: int = 30
    minutes: float | None = None  # a wall-clock budget instead of epochs
    iters_per_epoch: int = 25
    batch_size: int = 8
    patch: list[int] | None = None
    lr: float | None = None  # default 1e-3, fine-tuning 1e-4
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    grad_clip: float = 2.0
    ema: float = 0.0  # decay of an exponential moving average of the weights per step (0: off)
    intensity_aug: float = 0.15  # per patch, the chance of a contrast change and (separately) of a brightness shift
    gamma_aug: float = 0.3  # per patch, the chance of a random gamma (0.74-1.35) on its intensity range
    noise_aug: float = 0.3  # per patch, the chance of Gaussian noise (sigma up to 0.1 of the normalised range)
    affine_aug: float = 0.3  # per patch, the chance of a small rotation (+-15 degrees) and scaling (0.85-1.15)
    margin_aug: float = 0.0  # per patch, the chance of a flat background band along one side (zero-filled margins)
    patience: int = 10  # early stopping: epochs without a better validation Dice
    fg_fraction: float = 0.33
    val_fraction: float = 0.2
    split: str | None = None  # a split file (path or JSON text), see training/split.py
    case: str | None = None  # the case the regions below refer to (default: the only one)
    train_region: str | None = None
    val_region: str | None = None
    test_region: str | None = None
    freeze_encoder: bool = False
    normalization: dict[str, Any] | None = None
    device: str = "auto"
    precision: str = "auto"  # auto: mixed precision on CUDA (bf16, else fp16), fp32 elsewhere
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
    test_dice_before: list[float] | None = None
    val_dice_per_class: list[float] | None = None
    precision: str = "fp32"
    world_size: int = 1
    epochs_planned: int | None = None
    reproduce: str | None = None
    notes: list[str] = field(default_factory=list)
    validation: str = ""  # what the validation holds (slices, with foreground, voxels)
    criterion: str = "val_dice"  # how the checkpoint was chosen: "val_dice", or "train_loss" without usable validation
    kept_start: bool = False  # fine-tuning: no epoch beat the start model, its weights were kept
    best_epoch: int = 0


def check_config(cfg: TrainConfig) -> None:
    if cfg.minutes is not None and cfg.minutes <= 0:
        raise InputError(f"minutes must be > 0; got {cfg.minutes}.")
    if cfg.minutes is None and cfg.epochs < 1:
        raise InputError("Give a budget: epochs >= 1 or minutes > 0.")
    if cfg.iters_per_epoch < 1 or cfg.batch_size < 1:
        raise InputError("iters_per_epoch and batch_size must be >= 1.")
    if not 0 < cfg.val_fraction < 1:
        raise InputError(f"val_fraction must be between 0 and 1; got {cfg.val_fraction}.")
    if not 0 <= cfg.ema < 1:
        raise InputError(f"ema is a decay between 0 (off) and 1 (e.g. 0.99); got {cfg.ema}.")
    for name in AUGMENT_PROBABILITIES:
        if not 0 <= getattr(cfg, name) <= 1:
            raise InputError(f"{name} is a probability between 0 and 1; got {getattr(cfg, name)}.")
    if cfg.patience < 1:
        raise InputError(f"patience must be >= 1; got {cfg.patience}.")
