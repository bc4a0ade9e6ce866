"""Arguments and the progress line shared by ``attnseg train`` and ``attnseg finetune``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from ..devices import DEVICE_CHOICES


def add_budget_and_split(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="folder of an exported dataset (nnU-Net raw, MONAI or TIFF layout)")
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
    p.add_argument("--train-region", help="one-case datasets: array-index box(es), e.g. '0:512,0:224'; several joined by ';'")
    p.add_argument("--val-region", help="one-case datasets: validation box")
    p.add_argument("--test-region", help="one-case datasets: held-out box scored at the end and recorded in the card")
    p.add_argument("--normalization", help='JSON, e.g. \'{"scheme": "percentile", "lower": 1, "upper": 99}\'')
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="training precision on CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="", help="model name written into the card")
    p.add_argument("--description", default="", help="one-line description for the card")
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.* where a run stopped")


def config_kwargs(args: argparse.Namespace) -> dict:
    return {
        "dataset": args.dataset, "out": args.out, "epochs": args.epochs or 30, "minutes": args.minutes,
        "iters_per_epoch": args.iters_per_epoch, "batch_size": args.batch,
        "patch": [int(v) for v in args.patch.split(",")] if args.patch else None, "lr": args.lr,
        "patience": args.patience, "val_fraction": args.val_fraction, "train_region": args.train_region,
        "val_region": args.val_region, "test_region": args.test_region,
        "normalization": json.loads(args.normalization) if args.normalization else None,
        "device": args.device, "precision": args.precision, "seed": args.seed, "name": args.name,
        "description": args.description, "resume": args.resume,
        "command": "attnseg " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }


def print_progress(info: dict) -> None:
    total = info["epochs"]
    head = f"epoch {info['epoch']}/{total}" if total else f"epoch {info['epoch']} ({info['elapsed'] / 60:.1f}/{info['budget'] / 60:.1f} min)"
    done = info["epoch"] / total if total else min(info["elapsed"] / info["budget"], 1.0)
    bar = "#" * int(24 * done)
    print(f"\r[{bar:<24}] {head}  loss {info['loss']:.4f}  val Dice {info['val_dice']:.4f}  best {info['best']:.4f}",
          end="", file=sys.stderr, flush=True)


def print_summary(result) -> None:
    print(file=sys.stderr)
    before = "n/a (trained from scratch)" if result.val_dice_before is None else f"{result.val_dice_before:.4f}"
    print(f"split: {result.split}")
    print(f"validation Dice: start {before} -> result {result.val_dice_after:.4f} after {result.epochs} epochs "
          f"({result.seconds / 60:.1f} min){' (cancelled)' if result.cancelled else ''}")
    if result.test_dice:
        print("test Dice per class: " + ", ".join(f"{d:.4f}" for d in result.test_dice))
    print(f"checkpoint: {result.checkpoint}")
