"""``mfclip card MODEL_OR_RUN [--eval DIR ...] [--out card.md]``: a filled-in model card."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def _card(args: argparse.Namespace) -> int:
    from ..card import build_card, write_card

    if args.out:
        path = write_card(args.model, args.out, args.eval or (), args.template)
        print(f"wrote {path}")
    else:
        sys.stdout.write(build_card(args.model, args.eval or (), args.template))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "card", help="write the model card of a model or run folder (docs/model-card-template.md)"
    )
    p.add_argument("model", help="model folder, training run folder or hub id")
    p.add_argument(
        "--eval",
        action="append",
        metavar="DIR",
        help="an `mfclip evaluate` output folder (metrics.json, robustness.json); repeatable",
    )
    p.add_argument("--out", help="where to write the card (default: print it)")
    p.add_argument("--template", help="another card template with the same fields")
    p.set_defaults(func=_card)
