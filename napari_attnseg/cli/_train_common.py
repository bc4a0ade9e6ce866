"""Arguments and the progress line shared by ``attnseg train`` and ``attnseg finetune``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from ..errors import InputError
from ..inference.normalize import NONZERO_SCHEMES, SCHEMES
from ..options import DEVICES, PRECISIONS
from ..training.config import TrainConfig


def add_budget_and_split(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="folder of an exported dataset (nnU-Net raw, MONAI or TIFF layout), or one made elsewhere (nnU-Net "
                   "v1/v2, Decathlon, a MONAI datalist JSON, images/ with labels/ or masks/; docs/training.md)")
    p.add_argument("--out", required=True, help="folder for best.safetensors, its card and training_log.csv")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, default=None, help="number of epochs (default 30)")
    budget.add_argument("--minutes", type=float, default=None, help="wall-clock budget instead of epochs")
    p.add_argument("--iters-per-epoch", type=int, default=25)
    p.add_argument("--batch", type=int, default=8, help="patches per step")
    p.add_argument("--patch", type=str, default=None, help="patch size, e.g. 128,128 or 64,64,64")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3, fine-tuning 1e-4)")
    p.add_argument("--patience", type=int, default=10, help="early stopping: epochs without a better validation Dice")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of cases (or of the first axis) for validation")
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
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="validate and save an exponential moving average of the weights (e.g. 0.99 per step; "
                   "0: off); it steadies a validation Dice that swings between epochs")
    p.add_argument("--intensity-aug", type=float, default=TrainConfig.intensity_aug, metavar="P",
                   help="per training patch, the chance of a random contrast change (x0.8-1.2) and, separately, of a "
                   "brightness shift (+-0.1 of the normalised range); higher makes a model lean less on absolute "
                   "intensities (default 0.15)")
    p.add_argument("--gamma-aug", type=float, default=TrainConfig.gamma_aug, metavar="P",
                   help="per training patch, the chance of a random gamma (0.74-1.35) on its intensity range (default 0.3)")
    p.add_argument("--noise-aug", type=float, default=TrainConfig.noise_aug, metavar="P",
                   help="per training patch, the chance of Gaussian noise, sigma up to 0.1 of the normalised range "
                   "(default 0.3)")
    p.add_argument("--affine-aug", type=float, default=TrainConfig.affine_aug, metavar="P",
                   help="per training patch, the chance of a small rotation (+-15 degrees, in-plane for volumes) and "
                   "scaling (0.85-1.15), the labels resampled with it (default 0.3; flips and 90-degree turns are "
                   "always on)")
    p.add_argument("--margin-aug", type=float, default=TrainConfig.margin_aug, metavar="P",
                   help="per training patch, the chance of a flat band (the patch's minimum, labelled background) "
                   "along one side, so the model learns that zero-filled margins of mosaics or registered images "
                   "are empty (default 0)")
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up before the cosine decay")
    p.add_argument("--seed", type=int, default=0)
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
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; choose a folder for the model.")
    if out.suffix.lower() in (".safetensors", ".json", ".pt", ".pth") and not out.exists():
        raise InputError(f"--out {out} looks like a file name; --out names a folder (the model is written to "
                         f"OUT/best.safetensors with its card). Try --out {out.with_suffix('')}.")
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
    return {
        "dataset": args.dataset, "out": args.out, "epochs": args.epochs or 30, "minutes": args.minutes,
        "iters_per_epoch": args.iters_per_epoch, "batch_size": args.batch,
        "patch": parse_ints(args.patch, "--patch"), "lr": args.lr,
        "patience": args.patience, "val_fraction": args.val_fraction, "train_region": args.train_region,
        "val_region": args.val_region, "val_slices": parse_slices(args.val_slices),
        "test_region": args.test_region, "case": args.case, "split": args.split,
        "warmup_epochs": args.warmup_epochs, "ema": args.ema, "intensity_aug": args.intensity_aug,
        "gamma_aug": args.gamma_aug, "noise_aug": args.noise_aug,
        "affine_aug": args.affine_aug, "margin_aug": args.margin_aug,
        "normalization": parse_normalization(args.normalization),
        "device": args.device, "precision": args.precision, "seed": args.seed, "name": args.name,
        "description": args.description, "resume": args.resume,
        "command": "attnseg " + " ".join(shlex.quote(a) for a in getattr(args, "_argv", sys.argv[1:])),
    }


def is_main_process() -> bool:
    """Under torchrun only rank 0 prints."""
    return os.environ.get("RANK", "0") == "0"


class ProgressBar:
    """A tqdm bar on stderr over the run's steps, with the epoch, the loss and the validation Dice.

    With ``--minutes`` the number of epochs is known after the first one; until then the bar counts
    steps without a total. After every epoch one line is written above the bar (what a log keeps).
    """

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bar = None
        self.steps = None  # steps per epoch, from the step reports
        self.val, self.best, self.last = None, None, None  # last: the last step's report

    def _draw(self, info: dict, position: int | None) -> None:
        steps = self.steps
        total = info["epochs"] * steps if (info["epochs"] and steps) else None
        if self.bar is None:
            from tqdm import tqdm

            tty = hasattr(self.stream, "isatty") and self.stream.isatty()
            # in a log file (not a terminal) the bar is redrawn at most once a minute
            self.bar = tqdm(total=total, unit="step", file=self.stream, dynamic_ncols=True,
                            mininterval=0.1 if tty else 60.0)
        bar = self.bar
        if total != bar.total:
            bar.total = total
        if info["epochs"]:
            head = f"epoch {info['epoch']}/{info['epochs']}"
        else:
            head = f"epoch {info['epoch']} ({info['elapsed'] / 60:.1f}/{info['budget'] / 60:.1f} min)"
        bar.set_description(head, refresh=False)
        val = "" if self.val is None else f", val Dice {self.val:.4f} (best {self.best:.4f})"
        bar.set_postfix_str(f"loss {info['loss']:.4f}{val}", refresh=False)
        bar.update(max(0, (position if position is not None else bar.n) - bar.n))

    def step(self, info: dict) -> None:
        self.steps, self.last = info["steps"], info
        self._draw(info, (info["epoch"] - 1) * info["steps"] + info["step"])

    def _done(self, info: dict) -> int | None:
        """Steps run by the end of this epoch (one the time budget cut short counts its steps only)."""
        if not self.steps:
            return None
        return (info["epoch"] - 1) * self.steps + info.get("steps_done", self.steps)

    def epoch(self, info: dict) -> None:
        if info.get("refit"):  # the last epochs train on the validation slices too: nothing to validate
            self._draw(info, self._done(info))
            self.bar.write(f"epoch {info['epoch']}/{info['epochs'] or '?'} done  loss {info['loss']:.4f}  "
                           "(on all reviewed slices, validation ones included)", file=self.stream)
            return
        self.val, self.best = info["val_dice"], info["best"]
        self._draw(info, self._done(info))
        self.bar.write(f"epoch {info['epoch']}/{info['epochs'] or '?'} done  loss {info['loss']:.4f}  "
                       f"val Dice {self.val:.4f} (best {self.best:.4f})", file=self.stream)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_training(cfg) -> int:
    """Run the trainer with a progress bar and print the summary (rank 0 only under torchrun); Ctrl+C says what the
    run left in OUT (the best model so far, usable as it is, or none) and ends with status 130."""
    from ..inference.checks import fine_tuning_advice
    from ..training import train

    main = is_main_process()
    bar = ProgressBar()
    try:
        with fine_tuning_advice():  # (the run segments its own data: a fit warning advises for training on it)
            result = train(cfg, progress=bar.epoch if main else None, on_step=bar.step if main else None,
                           on_split=print_split if main else None)
    except KeyboardInterrupt:
        bar.close()
        if main:
            print(f"attnseg {'finetune' if cfg.start_model else 'train'}: interrupted; {interrupted_message(cfg)}",
                  file=sys.stderr)
        return 130
    finally:
        bar.close()
    if main:
        print_summary(result, cfg.dataset)
        last = bar.last  # less than one epoch (--minutes 0.2: 4 of 25 steps) wrote a model close to its start, unsaid
        if last and result.epochs <= 1 and last["epoch"] == 1 and last["step"] < last["steps"] and result.checkpoint:
            setup = f"; the setup took {result.setup_seconds:.0f} s of the {cfg.minutes:g} min budget" \
                if getattr(result, "setup_seconds", None) and cfg.minutes else ""
            print(f"warning: less than one epoch ran ({last['step']} of {last['steps']} steps{setup}): the model has "
                  f"hardly changed from {'the start' if cfg.start_model else 'its random weights'}; give a longer "
                  "budget (--minutes).", file=sys.stderr)
        hint = scratch_hint(cfg, result)
        if hint:
            print(hint, file=sys.stderr)
    return 0


def interrupted_message(cfg) -> str:
    """What an interrupted run left in ``cfg.out`` and how to go on (the generic "the epochs finished so far are saved"
    was said when none had, and never that best.safetensors is usable); the bare log of a run just begun is removed."""
    out = Path(cfg.out)
    log, best, state = out / "training_log.csv", out / "best.safetensors", out / "state.safetensors"
    rows = max(0, len(log.read_text().splitlines()) - 1) if log.is_file() else 0
    again = "run the same command with --resume to go on (or --overwrite to start again)"
    if best.is_file():
        try:
            card = json.loads((out / "best.json").read_text())
        except (OSError, ValueError):
            card = {}
        run, dice = card.get("training") or {}, (card.get("metrics") or {}).get("val_dice")
        said = [f"epoch {run['best_epoch']}" if run.get("best_epoch") else "",
                f"validation Dice {dice:.4f}" if isinstance(dice, (int, float)) else "",
                f"the start {run['val_dice_before']:.4f}" if isinstance(run.get("val_dice_before"), float) else ""]
        said = ", ".join(p for p in said if p)
        refit = (": the run's last part, training on every reviewed slice, did not happen"
                 if cfg.start_model and getattr(cfg, "refit", None) != 0 else "")
        return (f"{best} is the best model so far{f' ({said})' if said else ''}, usable as it is (attnseg predict "
                f"--model {shlex.quote(str(best))}; its card says finished: false{refit}); {again}.")
    if rows and state.is_file():
        beat = " none of which beat the start model's validation Dice:" if cfg.start_model else ""
        return f"{rows} epoch(s) finished,{beat} no model was written ({out} holds the run's state and log); {again}."
    if log.is_file() and not rows and not state.exists():  # the header the run began with: not a model
        log.unlink()
    return "no epoch had finished: no model was written; run the same command again to start over."


def print_split(split) -> None:
    """The split and its warnings on stderr before the first epoch (the summary repeats them): a validation that
    cannot measure (one slice with foreground, unreviewed slices, none: the training loss chooses) is said before
    the budget is spent, while the run can still be stopped and given other --val-slices / --val-region."""
    print(f"split: {split.describe()}", file=sys.stderr)
    for warning in split.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    sys.stderr.flush()


def scratch_hint(cfg, result) -> str | None:
    """A model trained from scratch that finds (almost) nothing: point at fine-tuning a bundled model of the
    same dimensionality on a few corrected slices instead (lung1, 4 CPU minutes: from scratch on every slice,
    validation Dice 0.0007; nuclei-2d fine-tuned on every slice, 3 epochs, nothing learned; fine-tuned on
    tumour slices 32 and 34 plus two suggested ones, 15-19 epochs: 0.68 on slice 33, docs/finetuning.md)."""
    if cfg.start_model or result.cancelled or getattr(result, "criterion", "val_dice") != "val_dice":
        return None
    if (result.val_dice_after or 0.0) >= 0.1 or not result.checkpoint:
        return None
    from ..checkpoint import read_card
    from ..models.registry import bundled_models

    config = (trained := read_card(result.checkpoint)).config
    dims, channels = config.get("spatial_dims"), config.get("in_channels", 1)
    ct = (trained.normalization or {}).get("scheme") == "ct"
    # one that takes the dataset's channels; a lung CT trained in 3D was sent to brain-mri-3d (a skull-stripping T1
    # model); a 2D model fine-tunes on volumes slice by slice (nuclei-2d on lung1: docs/finetuning.md)
    starts = [name for d in ((dims, 2) if dims == 3 else (dims,)) for name, card in bundled_models().items()
              if (c := card.get("config", {})).get("spatial_dims") == d and not c.get("prompts")
              and c.get("in_channels", 1) == channels
              and not (ct and (card.get("brain_extraction") or (card.get("normalization") or {}).get("nonzero")))]
    if not starts:
        return None
    exported, whole = dataset_kind(cfg.dataset)
    few = (" On a volume, export a few corrected slices (--reviewed-slices, tumour and tumour-free) rather than every "
           "slice: each epoch is shorter, so the same minutes train many more." if exported and whole else "")
    return (f"hint: a model trained from scratch needs far more data or time than this run had (validation Dice "
            f"{result.val_dice_after:.4f}). Start from a trained model instead; its encoder is kept and its output "
            f"layer is made for your classes: attnseg finetune {cfg.dataset} --model {starts[0]} --out DIR "
            f"--minutes M.{few}")


def dataset_kind(dataset) -> tuple[bool, bool]:
    """Whether ``dataset`` was exported by this project (a manifest.json), and whether its first case is a volume
    labelled on every slice; (False, False) for a dataset made elsewhere (nnU-Net, Decathlon, a MONAI datalist,
    images/ + masks/: never exported here) or one that cannot be read. Only an exported volume of every slice can be
    exported again as a few reviewed slices (2D images have no slices; reviewed slices are a few already)."""
    from ..data.manifest import read_manifest

    try:
        root = Path(dataset)
        manifest = read_manifest(root.parent if root.is_file() else root)
        case = manifest["cases"][0] if manifest is not None else None
    except Exception:  # noqa: BLE001 - (the run read it; a hint is not worth a traceback)
        return False, False
    if case is None:
        return False, False
    return True, len(case.get("shape") or ()) == 3 and case.get("reviewed_slices") is None


def _per_class(dice, result) -> str:
    """Dice per foreground class; with several, each named by the dataset's label table ("oedema 0.7311")."""
    names = list(getattr(result, "class_names", None) or [])[1:]
    dice = list(dice or [])
    if len(names) != len(dice) or len(names) < 2:
        return ", ".join(f"{d:.4f}" for d in dice)
    return ", ".join(f"{n} {d:.4f}" for n, d in zip(names, dice))


def print_summary(result, dataset: str | None = None) -> None:
    """The run's summary on stdout, its warnings on stderr; ``dataset`` (the run's) words what to add when the
    model finds nothing: reviewed slices of an export, labelled cases of a dataset made elsewhere."""
    before = "n/a (trained from scratch)" if result.val_dice_before is None else f"{result.val_dice_before:.4f}"
    print(f"split: {result.split}")
    print(f"validation Dice: start {before} -> result {result.val_dice_after:.4f} (per class "
          f"{_per_class(result.val_dice_per_class, result)}) after {result.epochs} epochs, "
          f"{result.seconds / 60:.1f} min, {result.precision}"
          f"{f', {result.world_size} processes' if result.world_size > 1 else ''}"
          f"{' (cancelled)' if result.cancelled else ''}")
    if result.test_dice:
        before = ""
        if result.test_dice_before:
            before = "start " + _per_class(result.test_dice_before, result) + " -> result "
        print("test Dice per class: " + before + _per_class(result.test_dice, result))
    for note in result.notes:
        print(f"note: {note}")
    if result.reproduce:
        print(f"reproduce: {result.reproduce}")
    print(f"checkpoint: {result.checkpoint or '(none written)'}")
    if result.checkpoint:
        from ..models.registry import user_models_dir

        run_dir = Path(result.checkpoint).parent
        if run_dir.parent.resolve() != user_models_dir().resolve():  # (a run written there is listed already)
            from ..models.registry import model_name_of  # (always a valid --name: a card's may not be)

            print(f"to use it by name (attnseg predict --model NAME, napari's model list): attnseg models --add "
                  f"{shlex.quote(str(run_dir))} --name {model_name_of(run_dir.name)}")
    if getattr(result, "criterion", "val_dice") == "val_dice" and not (result.val_dice_after or 0) > 0:
        more = ("add labelled cases that hold the object to the dataset" if dataset and not dataset_kind(dataset)[0]
                else "review more slices that hold the object")
        print(f"warning: the model finds nothing on the validation set (Dice 0): it is not usable yet. Give it more "
              f"time (--minutes), {more}, or check the labels.", file=sys.stderr)
