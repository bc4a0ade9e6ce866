"""`attnseg finetune`: fine-tune a model on an exported dataset of corrected masks."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..errors import InputError
from ._train_common import MODEL_FILES, add_budget_and_split, check_out, config_kwargs, run_training

NAME = "finetune"
HELP = "Fine-tune a model on an exported dataset of corrected masks."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # the "(default ...)" are training/config.py's FT_* (checked by tests/test_audit_cli_output.py): importing them
    # here imported the training code and torch, 2 s before --help
    add_budget_and_split(parser)
    parser.add_argument("--model", required=True,
                        help="a bundled model, one of your models (attnseg models), a .safetensors file or "
                             "a folder train/finetune wrote")
    parser.add_argument("--freeze-encoder", action="store_true", help="train only the decoder and attention gates")
    parser.add_argument("--train-bn", action="store_true",
                        help="let batch norm re-estimate its statistics (default: the start model's are kept, which "
                        "keeps a few slices from shifting the whole volume's predictions)")
    parser.add_argument("--l2sp", type=float, default=None, metavar="W",
                        help="pull towards the start weights, loss += W * sum (w - w0)^2 (default 0.001; 0: off)")
    parser.add_argument("--hard-negatives", type=float, default=None, metavar="SHARE",
                        help="share of patches centred on the model's false positives on labelled background (the "
                        "ones a person erased), refreshed as it trains (default 0.25; 0: off)")
    parser.add_argument("--refit", type=float, default=None, metavar="SHARE",
                        help="share of the budget that trains the chosen checkpoint on all reviewed slices, the "
                        "validation ones included (default 0.25; 0: off)")
    parser.add_argument("--far-negatives", type=float, default=None, metavar="SHARE",
                        help="share of patches centred on the model's foreground on unreviewed slices that connects "
                        "to no reviewed foreground, trained towards background with a low weight (default "
                        "0.15, used when the training slices hold >= 2 reviewed slices with "
                        "foreground; 0: off)")
    parser.add_argument("--prompts", action="store_true",
                        help="make the model promptable (click channels + attention priors) and train it by simulated "
                        "clicks on the dataset's objects (connected components of each class)")


def run(args: argparse.Namespace) -> int:
    from .._paths import expand_user_args
    from ..training import TrainConfig
    from ..training.class_checks import class_warnings
    from ..training.out_lock import release

    expand_user_args(args, "dataset", "out", "split")  # ("~/..." quoted for its spaces: not a folder named '~')
    if args.overwrite and not args.resume:
        refuse_start_in_out(args.model, Path(args.out))
    try:  # (check_out takes OUT's lock: held to the run's end, a second run into OUT is refused)
        check_out(args)
        for warning in class_warnings(args.model, args.dataset):  # before the run, where it is read
            print(warning, file=sys.stderr)
        cfg = TrainConfig(start_model=args.model, freeze_encoder=args.freeze_encoder, prompts=args.prompts,
                          freeze_bn=False if args.train_bn else None, l2sp=args.l2sp, hard_negatives=args.hard_negatives,
                          refit=args.refit, far_negatives=args.far_negatives, **config_kwargs(args))
        return run_training(cfg)
    finally:
        release(args.out)


def refuse_start_in_out(model: str, out: Path) -> None:
    """``--model OUT/best.safetensors --out OUT --overwrite`` moved the start model away (to ``OUT/replaced-1``) and
    then failed on "Model file OUT/best.safetensors does not exist": refused before anything moves."""
    from ..checkpoint import resolve_model_path

    try:
        start = resolve_model_path(model).resolve()
    except Exception:  # noqa: BLE001 - (a name that does not resolve is reported when the model is loaded)
        return
    if start.parent == out.resolve() and start.name in MODEL_FILES:
        raise InputError(f"--model {model} is the model in --out {out}, which --overwrite would move away before the "
                         f"run starts from it; write the new model to another folder (e.g. --out {shlex.quote(f'{out}-2')}).")
