"""The ``mfclip`` command line: a thin shell over the library.

Each area (``data``, ``model``, ...) registers its sub-commands from its own module, so this
file only wires them together.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .version import __version__

__all__ = ["at_least", "build_parser", "main"]

# Modules that expose ``register(subparsers)``; each adds its own sub-commands.
COMMAND_MODULES = (
    "mfclip.model.cli",
    "mfclip.data.cli",
    "mfclip.train.cli",
    "mfclip.evaluate.cli",
    "mfclip.protocol_cli",
    "mfclip.detect_cli",
    "mfclip.serve.cli",
    "mfclip.export_cli",
    "mfclip.demo",
)


def at_least(kind: type, minimum: float, strict: bool = False) -> Callable[[str], Any]:
    """An argparse ``type`` that rejects numbers below ``minimum`` (or equal, when ``strict``),
    so a bad option fails before a command opens or overwrites anything."""

    def parse(text: str) -> Any:
        value = kind(text)
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(
                f"must be {'>' if strict else '>='} {minimum}, got {text}"
            )
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid int" message
    return parse


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="mfclip",
        description="MFCLIP: detect forged and diffusion-generated face images.",
    )
    parser.add_argument("--version", action="version", version=f"mfclip {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        if args.verbose:
            raise
        print(f"mfclip: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
