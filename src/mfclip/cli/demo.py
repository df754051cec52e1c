"""``mfclip demo``: the offline end-to-end demo (its logic lives in :mod:`mfclip.demo`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["register"]

#: Kept in step with mfclip.demo.EPOCHS / CROPS_PER_PHOTO (importing it here would load numpy
#: and PIL for every ``mfclip --help``).
EPOCHS, CROPS_PER_PHOTO = 12, 20


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    # The demo's loader forks workers after the tokenizer ran; quiet its fork warning.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_demo(Path(args.out), args.seed, args.backbone, args.epochs, args.crops)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="offline end-to-end demo: data, training, calibration, evaluation, detection, card",
    )
    p.add_argument("--out", default="demo-output", help="where to write the demo's files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument(
        "--crops", type=int, default=CROPS_PER_PHOTO, help="crops per photograph (real + fake)"
    )
    p.add_argument("--backbone", help="real CLIP weights to use (hub id or local directory)")
    p.set_defaults(func=_demo)
