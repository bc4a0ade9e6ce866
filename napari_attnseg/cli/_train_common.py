"""Arguments shared by ``attnseg train`` and ``attnseg finetune``, their checks and the ``TrainConfig`` fields they
give. Running the run and reporting on it (progress bar, summary, hints) is in :mod:`._train_run`; its names are
re-exported here."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

from ..errors import InputError
from ..options import DEVICES, PRECISIONS
from ._train_run import (  # noqa: F401 (re-exported: train.py, finetune.py, tests and scripts import them from here)
    ProgressBar,
    _per_class,
    dataset_kind,
    interrupted_message,
    is_main_process,
    print_split,
    print_summary,
    run_training,
    scratch_hint,
)


def _checked(says: str, ok, whole: bool = False):
    """An argparse ``type`` that refuses a value outside its range at once ("argument --lr: takes a number > 0 ..."),
    before any data is read, as ``predict --tile`` does; ``ok`` tells the values kept."""
    def parse(text: str):
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not ok(value):
            raise argparse.ArgumentTypeError(f"takes {says}; got {text!r}")
        return value
    return parse


_COUNT = _checked("a whole number >= 1", lambda v: v >= 1, whole=True)
_CHANCE = _checked("a probability from 0 to 1, e.g. 0.3", lambda v: 0 <= v <= 1)


def add_budget_and_split(p: argparse.ArgumentParser) -> None:
    """The options both take. Building them imports nothing of the training code (its package imports torch: 2 s
    before --help): the augmentation defaults are TrainConfig's, filled in by :func:`config_kwargs`, and the help
    texts' "(default ...)" are checked against it by tests/test_audit_cli_output.py."""
    p.add_argument("dataset", help="folder of an exported dataset (nnU-Net raw, MONAI or TIFF layout), or one made elsewhere (nnU-Net "
                   "v1/v2, Decathlon, a MONAI datalist JSON, images/ with labels/ or masks/; docs/training.md)")
    p.add_argument("--out", required=True, help="folder for best.safetensors, its card and training_log.csv")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=_COUNT, default=None, help="number of epochs (default 30)")
    budget.add_argument("--minutes", type=_checked("a number of minutes > 0", lambda v: v > 0), default=None, help="wall-clock budget instead of epochs")
    p.add_argument("--iters-per-epoch", type=_COUNT, default=25, help="optimizer steps per epoch (default %(default)s)")
    p.add_argument("--batch", type=_COUNT, default=8, help="patches per step (default %(default)s)")
    p.add_argument("--patch", type=str, default=None, help="patch size, e.g. 128,128 or 64,64,64")
    p.add_argument("--lr", type=_checked("a learning rate > 0, e.g. 1e-4", lambda v: v > 0), default=None, help="learning rate (default 1e-3, fine-tuning 1e-4)")
    p.add_argument("--patience", type=_COUNT, default=None, help="early stopping: epochs without a better validation Dice "
                   "(default 10; 5 when fine-tuning one case on its reviewed slices, whose refit takes the epochs left)")
    p.add_argument("--val-fraction", type=_checked("a share between 0 and 1, e.g. 0.2", lambda v: 0 < v < 1), default=0.2, help="share of cases (or of the first axis) for validation (default %(default)s)")
    p.add_argument("--train-region", help="array-index box(es) of one case for training, e.g. '0:512,0:200' "
                   "(missing axes are whole); several joined by ';'. Default: the rest of the axis the validation "
                   "and test boxes cut")
    p.add_argument("--val-region", help="validation box of that case, e.g. '0:512,200:256'")
    p.add_argument("--val-slices", metavar="a,b,c-d",
                   help="one case: validate on these slices along the first axis (e.g. some reviewed slices, "
                   "tumour and tumour-free) and train on the rest; default: chosen from the labelled slices so the "
                   "validation holds foreground")
    p.add_argument("--test-region", help="held-out box scored at the end (Dice recorded in the card's metrics)")
    p.add_argument("--case", help="the case the regions refer to (needed when the dataset has several)")
    p.add_argument("--split", help='split file (JSON path or text): {"train": [...], "val": [...], "test": [...]}, '
                   'entries a case id or {"case": ID, "region": BOX}')
    p.add_argument("--normalization", help="percentile[:LO,HI], scale[:HI], zscore, ct[:LO,HI], none, "
                   "nonzero-<scheme> (statistics over non-zero voxels), or JSON, e.g. "
                   '\'{"scheme": "percentile", "lower": 1, "upper": 99}\'')
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto: mixed precision (bf16, else fp16) on CUDA, fp32 elsewhere; bf16 on a CPU is opt-in")
    p.add_argument("--ema", type=_checked("a decay from 0 (off) to below 1, e.g. 0.99", lambda v: 0 <= v < 1), default=0.0, metavar="DECAY",
                   help="validate and save an exponential moving average of the weights (e.g. 0.99 per step; "
                   "0: off); it steadies a validation Dice that swings between epochs")
    p.add_argument("--intensity-aug", type=_CHANCE, default=None, metavar="P",
                   help="per training patch, the chance of a random contrast change (x0.8-1.2) and, separately, of a "
                   "brightness shift (+-0.1 of the normalised range); higher makes a model lean less on absolute "
                   "intensities (default 0.15)")
    p.add_argument("--gamma-aug", type=_CHANCE, default=None, metavar="P",
                   help="per training patch, the chance of a random gamma (0.74-1.35) on its intensity range (default 0.3)")
    p.add_argument("--noise-aug", type=_CHANCE, default=None, metavar="P",
                   help="per training patch, the chance of Gaussian noise, sigma up to 0.1 of the normalised range "
                   "(default 0.3)")
    p.add_argument("--affine-aug", type=_CHANCE, default=None, metavar="P",
                   help="per training patch, the chance of a small rotation (+-15 degrees, in-plane for volumes) and "
                   "scaling (0.85-1.15), the labels resampled with it (default 0.3; flips and 90-degree turns are "
                   "always on)")
    p.add_argument("--margin-aug", type=_CHANCE, default=None, metavar="P",
                   help="per training patch, the chance of a flat band (the patch's minimum, labelled background) "
                   "along one side, so the model learns that zero-filled margins of mosaics or registered images "
                   "are empty (default 0)")
    p.add_argument("--warmup-epochs", type=_checked("a number of epochs >= 0", lambda v: v >= 0), default=1.0, help="epochs of linear warm-up before the cosine decay (default %(default)g)")
    p.add_argument("--seed", type=_checked("a whole number >= 0", lambda v: v >= 0, whole=True), default=0, help="random seed (default %(default)s)")
    p.add_argument("--name", default="", help="model name written into the card")
    p.add_argument("--description", default="", help="one-line description for the card")
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.* where a run stopped")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in OUT (default: refuse)")


MODEL_FILES = ("best.safetensors", "best.json", "state.safetensors", "state.json", "training_log.csv")


def check_out(args: argparse.Namespace) -> None:
    """Refuse an OUT that already holds a run's model, unless ``--resume`` (continue it) or ``--overwrite``.
    With ``--overwrite`` the earlier model's files move to ``OUT/replaced-<n>/`` first: a new run that keeps its
    start weights (no epoch beat them) must not destroy an earlier, better model (an audit lost one that way)."""
    from ..training.split_checks import check_dataset

    if getattr(args, "dataset", None) is not None:  # first: a mistyped DATASET must not move a model away
        check_dataset(args.dataset, None if args.split else parse_slices(args.val_slices), args.case)
    out = Path(args.out)
    if getattr(args, "dataset", None) is not None:
        refuse_out_in_dataset(out, Path(args.dataset))
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; choose a folder for the model.")
    if out.suffix.lower() in (".safetensors", ".json", ".pt", ".pth") and not out.exists():
        raise InputError(f"--out {out} looks like a file name; --out names a folder (the model is written to "
                         f"OUT/best.safetensors with its card). Try --out {shlex.quote(str(out.with_suffix('')))}.")
    from ..models.registry import model_name_of, unlisted_run

    if clash := unlisted_run(out):  # (checked before the run: its model would be hidden behind the other one)
        raise InputError(f"--out {out}: {clash}, so the new model would not be listed and --model {out.name} would load "
                         f"the other one. Choose another name, e.g. --out {shlex.quote(str(out.with_name(model_name_of(out.name + '-2'))))}.")
    from ..training.out_lock import acquire

    acquire(out)  # (held to the run's end: a second run into OUT is refused before it moves or reads anything)
    found = [name for name in MODEL_FILES if (out / name).exists()]
    if found and not (args.resume or args.overwrite):
        raise InputError(f"{out} already holds a model ({', '.join(found)}); choose a new --out, pass --resume to "
                         "continue that run, or --overwrite to replace it.")
    if found and args.overwrite and not args.resume:
        n = 1
        while (out / f"replaced-{n}").exists():
            n += 1
        keep = out / f"replaced-{n}"
        keep.mkdir()
        for name in found:
            (out / name).rename(keep / name)
        print(f"note: the earlier model in {out} was moved to {keep} (delete it when you no longer need it)",
              file=sys.stderr)


def refuse_out_in_dataset(out: Path, dataset: Path) -> None:
    """``finetune DS --out DS`` wrote the model's files among the dataset's (and ``--out DS/imagesTr`` among its
    cases): refused. A folder of its own inside the dataset (``DS/model``) is left alone: exports and the dataset
    readers look only at the layout's folders. The rule is :mod:`~napari_attnseg.data.out_folder`'s, which the napari
    Fine-tune tab applies too."""
    from ..data.out_folder import beside_dataset, dataset_part, dataset_root

    part = dataset_part(out, dataset)
    if part is None:
        return
    what = "the dataset folder" if not part else f"inside the dataset's {part}/ folder"
    raise InputError(f"--out {out} is {what} ({dataset_root(dataset)}): the model's files ({', '.join(MODEL_FILES[:2])}, "
                     f"...) would go among the dataset's files; choose a folder beside it, e.g. --out "
                     f"{shlex.quote(str(beside_dataset(dataset)))}.")


def parse_ints(text: str | None, option: str) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{option} takes sizes like 128,128 or 64,64,64; got {text!r}.") from None


def parse_slices(text: str | None) -> list[int] | None:
    if not text:
        return None
    from ..correct import parse_slice_ranges

    return parse_slice_ranges(text)  # an InputError naming the bad part


def parse_normalization(text: str | None) -> dict | None:
    """JSON, or a short form: ``percentile`` / ``percentile:1,99`` / ``scale:99`` / ``zscore`` / ``ct:-1000,400`` /
    ``none``; a ``nonzero-`` prefix (percentile, scale, zscore) takes the statistics over the non-zero voxels."""
    if not text:
        return None
    from ..inference.normalize import NONZERO_SCHEMES, SCHEMES

    if text.lstrip().startswith("{"):
        try:
            spec = json.loads(text)
        except ValueError as exc:
            raise InputError(f"--normalization is not valid JSON: {exc}") from None
    else:
        scheme, _, values = text.partition(":")
        try:
            nums = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise InputError(f"--normalization {text!r}: the values after ':' must be numbers.") from None
        scheme = scheme.strip().lower()
        nonzero = scheme.startswith("nonzero-")
        scheme = scheme.removeprefix("nonzero-")
        if nonzero and scheme not in NONZERO_SCHEMES:
            scheme = "?"  # ct and none have no statistics to restrict
        if scheme == "percentile":
            lo, hi = nums if len(nums) == 2 else (1.0, 99.0)
            spec = {"scheme": "percentile", "lower": lo, "upper": hi}
        elif scheme == "scale" and len(nums) <= 1:
            spec = {"scheme": "scale", "upper": nums[0] if nums else 99.0}
        elif scheme == "ct" and len(nums) == 2:
            spec = {"scheme": "ct", "window": nums}
        elif scheme in ("zscore", "none") and not nums:
            spec = {"scheme": scheme}
        else:
            spec = None
        if spec is not None and nonzero:
            spec["nonzero"] = True
    if not isinstance(spec, dict) or spec.get("scheme") not in SCHEMES:
        raise InputError(f"--normalization {text!r}: use percentile[:LO,HI], scale[:HI], zscore, "
                         "ct:LO,HI, none (nonzero- before percentile, scale or zscore) or the card's JSON.")
    return spec


def config_kwargs(args: argparse.Namespace) -> dict:
    from ..training.config import AUGMENT_PROBABILITIES

    # an augmentation option not given (None) keeps TrainConfig's default
    augment = {name: getattr(args, name) for name in AUGMENT_PROBABILITIES if getattr(args, name) is not None}
    return {
        **augment,
        "dataset": args.dataset, "out": args.out, "epochs": 30 if args.epochs is None else args.epochs, "minutes": args.minutes,
        "iters_per_epoch": args.iters_per_epoch, "batch_size": args.batch,
        "patch": parse_ints(args.patch, "--patch"), "lr": args.lr,
        "patience": args.patience, "val_fraction": args.val_fraction, "train_region": args.train_region,
        "val_region": args.val_region, "val_slices": parse_slices(args.val_slices),
        "test_region": args.test_region, "case": args.case, "split": args.split,
        "warmup_epochs": args.warmup_epochs, "ema": args.ema,
        "normalization": parse_normalization(args.normalization),
        "device": args.device, "precision": args.precision, "seed": args.seed, "name": args.name,
        "description": args.description, "resume": args.resume,
        "command": "attnseg " + " ".join(shlex.quote(a) for a in getattr(args, "_argv", sys.argv[1:])),
    }
