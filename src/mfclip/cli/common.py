"""Argparse helpers shared by the command modules, so each option is checked the same way."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["at_least"]


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
