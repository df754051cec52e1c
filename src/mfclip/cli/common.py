"""Argparse helpers shared by the command modules, so each option is checked the same way."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = [
    "FACE_MARGIN",
    "FACE_SIZE",
    "add_face_options",
    "at_least",
    "face_detector_kwargs",
    "in_process_group",
]

FACE_MARGIN = 1.3
FACE_SIZE = 256


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


def add_face_options(p: argparse.ArgumentParser) -> None:
    """``--margin``/``--face-size``/``--face-detector``: the crop ``mfclip data faces`` makes.

    The defaults are ``data faces``' defaults (``mfclip.data.faces.crop``, pinned by a test;
    not imported here so that ``mfclip --help`` loads no numpy), so a model trained on its crops
    sees the same pixels when it scores the original files with ``--faces``.
    """
    p.add_argument(
        "--margin", type=float, default=FACE_MARGIN, help="face crop margin (default 1.3)"
    )
    p.add_argument(
        "--face-size",
        type=at_least(int, 8),
        default=FACE_SIZE,
        help="face crop side in pixels before the model's resize (default 256, as data faces)",
    )
    p.add_argument(
        "--face-detector",
        default="haar",
        help="face detector: haar, haar-alt2, or package.module:Class (default haar)",
    )


def face_detector_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`mfclip.Detector` face options of a command given :func:`add_face_options`."""
    return {
        "faces": args.faces,
        "margin": args.margin,
        "face_size": args.face_size,
        "face_detector": args.face_detector,
    }


def in_process_group(
    run: Callable[[argparse.Namespace, Any], int], args: argparse.Namespace
) -> int:
    """Run a command under ``torchrun``'s process group (a world of one without it).

    Joins the group (gloo on CPU, NCCL on CUDA), tags log lines of ranks other than 0 and
    leaves the group however the command ends.
    """
    from ..distributed import DistEnv

    env = DistEnv.setup(args.device)
    env.tag_logs()
    with env.leaving_when_done():
        return run(args, env)
