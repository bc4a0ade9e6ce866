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
from collections.abc import Iterable
from contextvars import ContextVar

from .._version import __version__
from ..errors import AttnSegError

# order shown in --help
SUBCOMMANDS = ("demo", "models", "predict", "evaluate", "export", "dataset", "train", "finetune", "suggest")
_ARGV: ContextVar[list[str] | None] = ContextVar("attnseg_argv", default=None)  # what main parses, for the usage hints


# what an interrupted command leaves, and how to go on
INTERRUPTED = {
    "predict": "the inputs finished so far keep their outputs, and the next run replaces a half-written one. Run the "
               "same command again (a folder, glob or CSV input, or --summary, skips the finished cases)",
    "finetune": "the run had not started: nothing was trained or written; run the same command again",
    "train": "the run had not started: nothing was trained or written; run the same command again",
    "export": "the dataset is as before this export, or finished by the next export (crash-safe): export again",
    "dataset": "the case is listed as before, or removed and kept in the dataset's removed/ folder (crash-safe)",
    "evaluate": "nothing was written; run the same command again",
    "suggest": "nothing was written; run the same command again",
}


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``attnseg`` parser; ``commands``: the sub-commands that get their options (all by default). ``main`` gives
    only the one it runs: another's options import torch (3 s before ``attnseg --help`` or a usage error)."""
    parser = HintingParser(
        prog="attnseg",
        description="Attention segmentation models: predict, inspect attention, export, fine-tune.",
    )
    parser.add_argument("--version", action="version", version=f"attnseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=HintingParser)
    wanted = SUBCOMMANDS if commands is None else tuple(commands)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f".{name}", __name__)  # each keeps heavy imports inside its functions
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        if name in wanted:
            module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def command_of(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is not an option: attnseg's own options take no
    value), or None."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in SUBCOMMANDS else None


class HintingParser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors add what a new user most likely meant (see :mod:`._hints`)."""

    def error(self, message: str):  # noqa: D102 - (argparse's: prints usage and the message, exits 2)
        from ._hints import usage_hint

        hint = usage_hint(self, message, _ARGV.get() or [])
        super().error(f"{message}{f' ({hint})' if hint else ''}")


def main(argv: list[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    token, command = _ARGV.set(given), None
    try:  # (Ctrl+C while the options are read, torch imported, printed a traceback)
        command = command_of(given)
        parser = build_parser([command] if command else [])
        args = parser.parse_args(given)
    except KeyboardInterrupt:
        print(f"attnseg{f' {command}' if command else ''}: interrupted; nothing was run", file=sys.stderr)
        return 130
    finally:
        _ARGV.reset(token)
    args._argv = given  # recorded in model cards
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
