"""``mfclip calibrate MODEL --data MANIFEST --out DIR``: refit calibration and threshold."""

from __future__ import annotations

import argparse
import sys

from .common import at_least

__all__ = ["register"]


def _band(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two numbers), got {text!r}") from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise argparse.ArgumentTypeError(f"need 0 <= LO <= HI <= 1, got {text!r}")
    return lo, hi


def _rule(text: str) -> str:
    from ..evaluate.operating import parse_rule

    try:
        parse_rule(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _calibrate(args: argparse.Namespace) -> int:
    from ..evaluate.recalibrate import RecalibrateOptions, recalibrate
    from ..loading import load_model
    from ..operating import OperatingPoint

    model = load_model(args.model, args.device)
    band = args.uncertain_band if args.uncertain_band is not None else args.uncertain_accuracy
    options = RecalibrateOptions(
        split=None if args.split == "all" else args.split,
        root=args.root,
        method=args.method,
        rule=args.rule,
        band=band,
        batch_size=args.batch_size,
        num_workers=args.workers,
        progress=not args.quiet,
    )
    fitted = recalibrate(model, args.data, options)
    out = model.save_pretrained(args.out)
    before, after = (fitted["calibration_report"][k] for k in ("before", "after"))
    print(f"{'':8} {'ECE':>8} {'ECE (adaptive)':>15} {'Brier':>8} {'NLL':>8}")
    for name, row in (("before", before), ("after", after)):
        cells = (row["ece"], row["ece_adaptive"], row["brier"], row["nll"])
        print(f"{name:8} {cells[0]:8.4f} {cells[1]:15.4f} {cells[2]:8.4f} {cells[3]:8.4f}")
    print(OperatingPoint.from_training_info(model.training_info).summary())
    if fitted.get("skipped_files"):
        print(f"skipped {fitted['skipped_files']} unreadable file(s)", file=sys.stderr)
    print(f"wrote {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="refit calibration and the decision threshold on your own labelled images",
        description="Score a labelled manifest with a trained model, fit its calibration and "
        "operating point on it, and write a model folder every command accepts. The weights "
        "are not changed.",
    )
    p.add_argument("model", help="model folder, training run folder, or hub repo id")
    p.add_argument("--data", required=True, help="labelled manifest (CSV or JSONL)")
    p.add_argument("--out", required=True, help="where the recalibrated model folder goes")
    p.add_argument("--split", default="val", help="rows to fit on: a split name or 'all'")
    p.add_argument("--root", help="folder the manifest's paths resolve against")
    p.add_argument(
        "--method",
        choices=("temperature", "platt", "isotonic", "none"),
        default="temperature",
        help="calibration (default temperature scaling)",
    )
    p.add_argument(
        "--rule",
        type=_rule,
        default="eer",
        help="threshold rule: eer, youden, best_acc, fpr=X, tpr=X, fixed[=X] (default eer)",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--uncertain-accuracy",
        type=float,
        help="derive an uncertain band so that outside it this accuracy is reached (e.g. 0.95)",
    )
    group.add_argument("--uncertain-band", type=_band, metavar="LO,HI", help="a given band")
    p.add_argument("--batch-size", type=at_least(int, 1), default=64)
    p.add_argument("--workers", type=at_least(int, 0), default=2)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_calibrate)
