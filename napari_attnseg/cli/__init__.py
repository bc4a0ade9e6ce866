"""The ``attnseg`` command line: one module per sub-command, each thin over the core.

A sub-command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Every failure ends as one line on stderr and exit status 1 (130 when interrupted); set
``ATTNSEG_DEBUG=1`` to get the traceback of an unexpected error instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from .._version import __version__
from ..errors import AttnSegError

# order shown in --help
SUBCOMMANDS = ("demo", "models", "predict", "evaluate", "export", "train", "finetune", "suggest")


# what an interrupted command leaves, and how to go on
INTERRUPTED = {
    "predict": "the outputs of the inputs finished so far are kept, and the next run redoes a half-written one. Run "
               "the same command again: a folder, glob or CSV input (or --summary) skips the finished cases (its summary CSV lists them)",
    "finetune": "the run had not started: nothing was trained or written; run the same command again",
    "train": "the run had not started: nothing was trained or written; run the same command again",
    "export": "the dataset is as before this export, or finished by the next export (crash-safe): export again",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnseg",
        description="Attention segmentation models: predict, inspect attention, export, fine-tune.",
    )
    parser.add_argument("--version", action="version", version=f"attnseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f".{name}", __name__)  # each keeps heavy imports inside run()
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # recorded in model cards
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    # the commands print a prediction's warnings themselves, with the input's name: not twice
    logging.getLogger("napari_attnseg.inference.engine").setLevel(logging.ERROR)
    try:
        return int(args._run(args) or 0)
    except AttnSegError as exc:
        print(f"attnseg {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        hint = INTERRUPTED.get(args.command, "")
        print(f"attnseg {args.command}: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130
    except Exception as exc:  # a failure nobody anticipated: still one line, the traceback on request
        if os.environ.get("ATTNSEG_DEBUG"):
            raise
        print(f"attnseg {args.command}: error: {type(exc).__name__}: {one_line(exc)} "
              "(set ATTNSEG_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def one_line(exc: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
