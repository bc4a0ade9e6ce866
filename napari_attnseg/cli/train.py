"""`attnseg train`: train a model from scratch on an exported dataset."""

from __future__ import annotations

import argparse
import json

from ._train_common import add_budget_and_split, check_out, config_kwargs, run_training

NAME = "train"
HELP = "Train a model from scratch on an exported dataset."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_budget_and_split(parser)
    parser.add_argument("--arch", required=True, help="unet, attention_unet, msga or transfuse")
    parser.add_argument("--dims", type=int, choices=(2, 3), default=None, help="2 or 3 (default: 3 for volumes when the architecture allows)")
    parser.add_argument("--config", default="{}", help='architecture options as JSON, e.g. \'{"features": [16, 32, 64, 128, 256]}\'')


def architecture_options(text: str, dims: int | None) -> tuple[dict, int | None]:
    """``--config`` as a dict of architecture options, and the spatial dimensions from ``--dims`` or
    from the config's ``spatial_dims`` (the two must agree); the dataset sets the channels."""
    from ..errors import InputError

    try:
        config = json.loads(text)
    except ValueError as exc:
        raise InputError(f"--config is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise InputError(f"--config takes a JSON object, e.g. '{{\"features\": [16, 32, 64]}}'; got {text!r}.")
    config = dict(config)
    if "spatial_dims" in config:
        given = config.pop("spatial_dims")
        if given not in (2, 3):
            raise InputError(f"--config spatial_dims must be 2 or 3; got {given!r}.")
        if dims is not None and dims != given:
            raise InputError(f"--dims {dims} and --config spatial_dims {given} disagree; give one of them.")
        dims = given
    fixed = sorted({"in_channels", "out_channels"} & set(config))
    if fixed:
        raise InputError(f"--config cannot set {' or '.join(fixed)}: the dataset's channels and classes decide them.")
    return config, dims


def run(args: argparse.Namespace) -> int:
    from .._paths import expand_user_args
    from ..training import TrainConfig
    from ..training.out_lock import release

    expand_user_args(args, "dataset", "out", "split")  # ("~/..." quoted for its spaces: not a folder named '~')
    try:  # (check_out takes OUT's lock: held to the run's end)
        check_out(args)
        model_config, dims = architecture_options(args.config, args.dims)
        cfg = TrainConfig(arch=args.arch, model_config=model_config, spatial_dims=dims, **config_kwargs(args))
        return run_training(cfg)
    finally:
        release(args.out)
