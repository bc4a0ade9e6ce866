"""What a training run is asked to do (:class:`TrainConfig`) and what it reports (:class:`TrainResult`);
plain data, no torch, checked by :func:`check_config` before anything is loaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

CT_WINDOW = (-1000.0, 400.0)  # HU: air to dense soft tissue; bone clips at 1
FT_LR = 1e-4
FT_L2SP = 1e-3
FT_HARD_NEGATIVES = 0.25
FT_REFIT = 0.25
FT_FAR_NEGATIVES = 0.15  # used only with >= 2 reviewed foreground slices to train on (training/far.py)
PATIENCE = 10  # early stopping: epochs without a better validation Dice
# a fine-tune of one case's reviewed slices, whose refit (training/refit.py) takes the epochs early stopping leaves:
# its one or two validation slices peak early (lung1: epoch 1), and the refit is where it learns (docs/finetuning.md)
FT_PATIENCE = 5

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
    minutes: float | None = None  # a wall-clock budget instead of epochs, for the whole run (setup included)
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
    patience: int | None = None  # early stopping: epochs without a better validation Dice (None: PATIENCE, FT_PATIENCE)
    fg_fraction: float = 0.33
    val_fraction: float = 0.2
    split: str | None = None  # a split file (path or JSON text), see training/split.py
    case: str | None = None  # the case the regions below refer to (default: the only one)
    train_region: str | None = None
    val_region: str | None = None
    test_region: str | None = None
    val_slices: list[int] | None = None  # one case: validate on these positions along the first axis, train on the rest
    freeze_encoder: bool = False
    prompts: bool = False  # issue 18: train a promptable model by simulated clicks (napari_attnseg/prompts/training.py)
    prompt_threshold: float = 0.0  # prompts: share of patches whose previous mask is the threshold guess under the
    # first click (prompts/initial.py); > 0 also writes prompt_init "threshold" into the card and validates with it
    normalization: dict[str, Any] | None = None  # default: the start model's card; from scratch percentile 1-99;
    # either way a CT window when the images are in Hounsfield units (see ct_window)
    ct_window: list[float] | None = field(default_factory=lambda: list(CT_WINDOW))  # None: never switch to it
    # Fine-tuning defaults (None = the default for the run: fine-tuning from start_model vs from scratch),
    # the same for the CLI and the napari panel (see fine_tune_defaults):
    freeze_bn: bool | None = None  # keep the start model's batch-norm statistics (fine-tuning: True)
    l2sp: float | None = None  # L2-SP pull towards the start weights, loss += l2sp * sum (w - w0)^2 (fine-tuning: FT_L2SP)
    hard_negatives: float | None = None  # share of patches centred on the start model's false positives on
    # labelled background (the erased ones; fine-tuning: FT_HARD_NEGATIVES)
    refit: float | None = None  # share of the budget that trains the chosen checkpoint on validation slices too
    # (fine-tuning: FT_REFIT; see training/refit.py)
    far_negatives: float | None = None  # share of patches centred on the model's foreground on unreviewed slices
    # that connects to no reviewed foreground, trained towards background (fine-tuning: FT_FAR_NEGATIVES; .far)
    refresh_hard: bool = True  # after every epoch add the current model's false positives there to the hard negatives
    device: str = "auto"
    precision: str = "auto"  # auto: mixed precision on CUDA (bf16, else fp16), fp32 elsewhere
    seed: int = 0
    name: str = ""
    description: str = ""
    resume: bool = False
    command: str = ""


@dataclass
class TrainResult:
    checkpoint: str | None  # None when no model was saved (nothing was learned: see ``train``)
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
    refit_epochs: int = 0  # epochs trained on all reviewed slices (validation included) after the choice, see .refit
    best_epoch: int = 0
    setup_seconds: float = 0.0  # of ``seconds``: loading, the start model's validation etc. before the first epoch
    class_names: list[str] = field(default_factory=list)  # the dataset's label table, background first


def fine_tune_defaults(cfg: TrainConfig) -> dict[str, Any]:
    """The settings a run actually uses where ``cfg`` leaves them at None (one place for CLI and panel)."""
    ft = bool(cfg.start_model)
    return {"lr": cfg.lr or (FT_LR if ft else 1e-3),
            "freeze_bn": cfg.freeze_bn if cfg.freeze_bn is not None else ft,
            "l2sp": cfg.l2sp if cfg.l2sp is not None else (FT_L2SP if ft else 0.0),
            "hard_negatives": cfg.hard_negatives if cfg.hard_negatives is not None else (FT_HARD_NEGATIVES if ft else 0.0),
            "refit": cfg.refit if cfg.refit is not None else (FT_REFIT if ft else 0.0),
            "far_negatives": cfg.far_negatives if cfg.far_negatives is not None else (FT_FAR_NEGATIVES if ft else 0.0)}


# the command-line option of each TrainConfig field a message names (attnseg train / finetune)
OPTION = {"val_fraction": "--val-fraction", "iters_per_epoch": "--iters-per-epoch", "batch_size": "--batch",
          "minutes": "--minutes", "epochs": "--epochs", "ema": "--ema", "l2sp": "--l2sp", "refit": "--refit",
          "hard_negatives": "--hard-negatives", "far_negatives": "--far-negatives", "patience": "--patience",
          "val_slices": "--val-slices", "val_region": "--val-region", "split": "--split", "lr": "--lr",
          "seed": "--seed", "warmup_epochs": "--warmup-epochs",
          **{n: "--" + n.replace("_", "-") for n in AUGMENT_PROBABILITIES}}


def _opt(name: str) -> str:
    """``val_fraction (--val-fraction)``: the field (Python, napari) and its option (CLI)."""
    return f"{name} ({OPTION[name]})" if name in OPTION else name


def check_config(cfg: TrainConfig) -> None:
    if cfg.minutes is not None and cfg.minutes <= 0:
        raise InputError(f"{_opt('minutes')} must be > 0; got {cfg.minutes}.")
    if cfg.minutes is None and cfg.epochs < 1:
        raise InputError(f"Give a budget: {_opt('epochs')} >= 1 or {_opt('minutes')} > 0; got {cfg.epochs} epochs.")
    for name in ("iters_per_epoch", "batch_size"):
        if getattr(cfg, name) < 1:
            raise InputError(f"{_opt(name)} must be >= 1; got {getattr(cfg, name)}.")
    if cfg.lr is not None and not cfg.lr > 0:  # (0 took the default rate: `cfg.lr or FT_LR`)
        raise InputError(f"{_opt('lr')} is a learning rate > 0 (e.g. 1e-4); got {cfg.lr}.")
    if cfg.seed < 0:
        raise InputError(f"{_opt('seed')} must be a whole number >= 0; got {cfg.seed}.")
    if cfg.warmup_epochs < 0:
        raise InputError(f"{_opt('warmup_epochs')} must be >= 0; got {cfg.warmup_epochs}.")
    if not 0 < cfg.val_fraction < 1:
        raise InputError(f"{_opt('val_fraction')} must be between 0 and 1; got {cfg.val_fraction}.")
    if not 0 <= cfg.ema < 1:
        raise InputError(f"{_opt('ema')} is a decay between 0 (off) and 1 (e.g. 0.99); got {cfg.ema}.")
    for name in AUGMENT_PROBABILITIES:
        if not 0 <= getattr(cfg, name) <= 1:
            raise InputError(f"{_opt(name)} is a probability between 0 and 1; got {getattr(cfg, name)}.")
    if cfg.l2sp is not None and cfg.l2sp < 0:
        raise InputError(f"{_opt('l2sp')} must be >= 0; got {cfg.l2sp}.")
    for name in ("hard_negatives", "far_negatives"):
        if getattr(cfg, name) is not None and not 0 <= getattr(cfg, name) < 1:
            raise InputError(f"{_opt(name)} is a share of patches between 0 and 1; got {getattr(cfg, name)}.")
    shares = fine_tune_defaults(cfg)
    if shares["hard_negatives"] + shares["far_negatives"] + cfg.fg_fraction >= 1:
        raise InputError(f"{_opt('hard_negatives')} + {_opt('far_negatives')} must leave room for the foreground "
                         f"patches ({cfg.fg_fraction:g} of them): their sum must be below {1 - cfg.fg_fraction:g}; got "
                         f"{shares['hard_negatives']:g} + {shares['far_negatives']:g}.")
    if cfg.refit is not None and not 0 <= cfg.refit < 1:
        raise InputError(f"{_opt('refit')} is a share of the budget between 0 and 1; got {cfg.refit}.")
    if cfg.ct_window is not None and (len(cfg.ct_window) != 2 or cfg.ct_window[0] >= cfg.ct_window[1]):
        raise InputError(f"ct_window is [low, high] in HU; got {cfg.ct_window}.")
    if cfg.val_slices is not None and (not cfg.val_slices or min(cfg.val_slices) < 0):
        raise InputError(f"{_opt('val_slices')} are slice indices >= 0; got {cfg.val_slices}.")
    if cfg.val_slices and (cfg.val_region or cfg.split):
        raise InputError(f"Give the validation once: {_opt('val_slices')}, {_opt('val_region')} or a split file "
                         "(split / --split), not several.")
    if not 0 <= cfg.prompt_threshold <= 1:
        raise InputError(f"prompt_threshold is a share of patches between 0 and 1; got {cfg.prompt_threshold}.")
    if cfg.prompt_threshold and not cfg.prompts:
        raise InputError("prompt_threshold needs prompts (a promptable model trained by simulated clicks).")
    if cfg.patience is not None and cfg.patience < 1:
        raise InputError(f"{_opt('patience')} must be >= 1; got {cfg.patience}.")
