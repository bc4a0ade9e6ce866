"""`attnseg finetune`: fine-tune a model on an exported dataset of corrected masks."""

from __future__ import annotations

import argparse

from ._train_common import add_budget_and_split, config_kwargs, run_training

NAME = "finetune"
HELP = "Fine-tune a model on an exported dataset of corrected masks."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_budget_and_split(parser)
    parser.add_argument("--model", required=True, help="bundled model name or path to a .safetensors checkpoint")
    parser.add_argument("--freeze-encoder", action="store_true", help="train only the decoder and attention gates")
    parser.add_argument("--prompts", action="store_true",
                        help="make the model promptable (click channels + attention priors) and train it by simulated "
                        "clicks on the dataset's objects (connected components of each class)")


def run(args: argparse.Namespace) -> int:
    from ..training import TrainConfig

    cfg = TrainConfig(start_model=args.model, freeze_encoder=args.freeze_encoder, prompts=args.prompts,
                      **config_kwargs(args))
    return run_training(cfg)
