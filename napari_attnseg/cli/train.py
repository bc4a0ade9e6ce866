"""`attnseg train`: train a model from scratch on an exported dataset."""

from __future__ import annotations

import argparse
import json

from ._train_common import add_budget_and_split, config_kwargs, run_training

NAME = "train"
HELP = "Train a model from scratch on an exported dataset."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_budget_and_split(parser)
    parser.add_argument("--arch", required=True, help="unet, attention_unet, msga or transfuse")
    parser.add_argument("--dims", type=int, choices=(2, 3), default=None, help="2 or 3 (default: 3 for volumes when the architecture allows)")
    parser.add_argument("--config", default="{}", help='architecture options as JSON, e.g. \'{"features": [16, 32, 64, 128, 256]}\'')


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..training import TrainConfig

    try:
        model_config = json.loads(args.config)
    except ValueError as exc:
        raise InputError(f"--config is not valid JSON: {exc}") from None
    cfg = TrainConfig(arch=args.arch, model_config=model_config, spatial_dims=args.dims, **config_kwargs(args))
    return run_training(cfg)
