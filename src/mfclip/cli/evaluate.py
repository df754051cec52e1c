"""``mfclip evaluate --model RUN_OR_DIR --data MANIFEST``: the full report of one test set.

Under ``torchrun`` the ranks share the scoring; rank 0 writes the report and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import in_process_group

__all__ = ["register"]

#: ``mfclip.evaluate.deepfakebench.METRIC_DEFINITIONS``, repeated so that building the parser
#: does not import scikit-learn (a test checks the two agree).
_METRIC_DEFINITIONS = ("mfclip", "deepfakebench")


def _evaluate(args: argparse.Namespace) -> int:
    return in_process_group(_run, args)


def _run(args: argparse.Namespace, env: Any) -> int:
    from ..evaluate.runner import EvalOptions, evaluate

    out = Path(args.out) if args.out else Path(args.model) / "eval" / Path(args.data).stem
    options = EvalOptions(
        split=None if args.split == "all" else args.split,
        root=args.root,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=str(env.device),
        bootstrap=args.bootstrap,
        seed=args.seed,
        perturb=" ".join(args.perturb) if args.perturb else None,
        tsne=args.tsne,
        progress=not args.quiet,
        metrics=args.metrics,
    )
    result = evaluate(args.model, args.data, out, options, env=env)
    if not env.is_main:
        return 0
    overall = result["by_generator"]["all"]
    print(
        f"AUC {overall['auc']:.4f}  AP {overall['ap']:.4f}  EER {overall['eer']:.4f}  "
        f"ACC@thr {overall['acc@thr']:.4f} "
        f"(threshold {result['model_threshold']:.3f}, fixed on validation)"
    )
    print(
        f"at the threshold: {overall['fpr@thr']:.2%} of reals flagged, "
        f"{overall['tpr@thr']:.2%} of fakes caught; "
        f"TPR@FPR=1% {overall['tpr@fpr=0.01']:.2%}, FPR@TPR=95% {overall['fpr@tpr=0.95']:.2%}"
    )
    cal = result["calibration"]
    state = f"calibrated ({cal['method']})" if cal["calibrated"] else "uncalibrated"
    print(
        f"calibration: {state}; ECE {cal['before']['ece']:.4f} raw -> "
        f"{cal['after']['ece']:.4f} reported, Brier {cal['before']['brier']:.4f} -> "
        f"{cal['after']['brier']:.4f}"
    )
    if result["skipped_files"]:
        print(f"skipped {result['skipped_files']} unreadable file(s); see the log")
    files = "metrics.json, metrics.csv, scores.csv, roc.png, pr.png, reliability.png"
    if "robustness" in result:
        files += ", robustness.md"
    if "deepfakebench" in result:
        dfb = result["deepfakebench"]["all"]
        print(
            f"DeepfakeBench definitions (raw score): AUC {dfb['auc']:.4f}  EER {dfb['eer']:.4f}  "
            f"AP {dfb['ap']:.4f}  ACC {dfb['acc']:.4f}  video AUC {dfb['video_auc']:.4f}"
        )
        files += ", deepfakebench.json"
    print(f"report: {out / 'report.md'} ({files})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained model on a manifest split")
    p.add_argument("--model", required=True, help="run folder (its best checkpoint) or model dir")
    p.add_argument("--data", required=True, help="manifest (CSV or JSONL)")
    p.add_argument("--split", default="test", help="manifest split to evaluate, or 'all'")
    p.add_argument("--root", help="folder that relative manifest paths resolve against")
    p.add_argument("--out", help="report folder (default: MODEL/eval/<manifest name>)")
    p.add_argument(
        "--perturb",
        nargs="*",
        metavar="NAME=V1,V2",
        help=(
            "robustness sweep, applied to real and fake images alike: jpeg=Q, webp=Q, "
            "rejpeg=Q (JPEG twice), blur=SIGMA, resize=F, crop=F (central), noise=STD, "
            "social=L, or the chains social1080 / social512 (long side at most 1080 / 512 px, "
            "then JPEG 75); e.g. jpeg=50,70 social1080 crop=0.8"
        ),
    )
    p.add_argument("--tsne", action="store_true", help="t-SNE plot of the fused visual features")
    p.add_argument(
        "--metrics",
        choices=_METRIC_DEFINITIONS,
        default="mfclip",
        help=(
            "metric definitions: mfclip (EER interpolated on the full ROC, accuracy at the "
            "stored threshold, videos = manifest group) or deepfakebench, which adds "
            "DeepfakeBench's get_test_metrics numbers (nearest-point EER, accuracy at p > 0.5, "
            "videos = parent folder name, on the raw uncalibrated score) to report.md and "
            "deepfakebench.json, to compare with its published tables"
        ),
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="decoding worker processes")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_evaluate)
