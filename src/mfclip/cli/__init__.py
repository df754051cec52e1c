"""The ``mfclip`` command line: a thin shell over the library.

One module per command area (``model``, ``data``, ``train``, ...), each exposing
``register(subparsers)``; this file only wires them together. The command modules import
torch and the other heavy libraries inside their command functions, so ``mfclip --help``
stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..errors import MFCLIPError
from ..version import __version__
from . import calibrate, card, data, demo, detect, evaluate, export, model, protocol, serve, train

__all__ = ["COMMANDS", "build_parser", "main"]

#: Command modules in the order ``mfclip --help`` lists their commands.
COMMANDS = (model, data, train, evaluate, calibrate, protocol, detect, serve, export, card, demo)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command registered (also used to check the docs)."""
    parser = argparse.ArgumentParser(
        prog="mfclip",
        description="MFCLIP: detect forged and diffusion-generated face images.",
    )
    parser.add_argument("--version", action="version", version=f"mfclip {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors mfclip raises on purpose become one line and exit status 1."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse cannot take positionals after an option (`create P --out D a=b`); overrides can.
    overrides = [x for x in extra if "=" in x and not x.startswith("-")]
    if overrides and isinstance(getattr(args, "overrides", None), list):
        args.overrides.extend(overrides)
        extra = [x for x in extra if x not in overrides]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return 130
    except (MFCLIPError, ValueError, OSError, RuntimeError) as exc:
        if args.verbose:
            raise
        print(f"mfclip: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
