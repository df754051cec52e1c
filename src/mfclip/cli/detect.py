"""``mfclip detect PATH... --model DIR``: score images, folders, globs and videos."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from .common import add_face_options, at_least, face_detector_kwargs

__all__ = ["register"]

FIELDS = ["source", "kind", "frame", "frames", "fake_prob", "label", "threshold", "face_box",
          "patch_box", "error", "raw_prob", "reason"]  # fmt: skip


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def _detect(args: argparse.Namespace) -> int:
    from ..inference.detector import Detector
    from ..inference.inputs import expand_inputs

    paths = expand_inputs(args.paths)
    if not paths:
        raise ValueError("no input files found")
    detector = Detector.from_pretrained(
        args.model,
        device=args.device,
        frames=args.frames,
        threshold=args.threshold,
        **face_detector_kwargs(args),
    )
    out_path = Path(args.out) if args.out else None
    sink = out_path.open("w", newline="") if out_path else sys.stdout
    as_json = out_path is not None and out_path.suffix == ".jsonl"
    writer = None if as_json else csv.DictWriter(sink, fieldnames=FIELDS)
    if writer is not None:
        writer.writeheader()
    scored = failed = 0
    explained = 0
    verdicts: dict[str, int] = {}
    try:
        rows = detector.detect_paths(
            paths,
            batch_size=args.batch_size,
            workers=args.workers,
            decode=args.decode,
            per_frame=args.per_frame,
            progress=not args.quiet and len(paths) > 1,
        )
        for det in rows:
            row = det.to_dict()
            if as_json:
                sink.write(json.dumps({k: row[k] for k in FIELDS}) + "\n")
            else:
                writer.writerow({k: _cell(row[k]) for k in FIELDS})
            if det.kind == "frame":
                continue
            if det.ok:
                scored += 1
                verdicts[det.label] = verdicts.get(det.label, 0) + 1
                if args.explain and det.kind == "image":
                    target = Path(args.explain) / f"{explained:05d}_{Path(det.source).stem}.png"
                    detector.explain(det.source).save(target)
                    explained += 1
            else:
                failed += 1
    finally:
        if out_path:
            sink.close()
    stats = detector.stats
    if not args.quiet:
        print(
            f"scored {scored}, failed {failed} of {len(paths)} input(s); {stats.images} image(s) "
            f"in {stats.total_s:.1f}s ({stats.images_per_s:.1f} images/s, waiting for decoded "
            f"images {100 * stats.wait_fraction:.0f}% of the time)",
            file=sys.stderr,
        )
        if verdicts:
            counts = ", ".join(f"{n} {label}" for label, n in sorted(verdicts.items()))
            print(f"verdicts: {counts}; {detector.operating_point.summary()}", file=sys.stderr)
        if out_path:
            print(f"results: {out_path}", file=sys.stderr)
        if args.explain:
            print(f"explanations: {args.explain} ({explained} PNG)", file=sys.stderr)
    return 0 if scored else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="score images, folders, globs and videos")
    p.add_argument("paths", nargs="+", help="files, folders (recursive), globs, videos")
    p.add_argument("--model", required=True, help="model dir, run folder, or hub repo id")
    p.add_argument("--out", help="results file (.csv or .jsonl; default: CSV on stdout)")
    p.add_argument(
        "--threshold",
        type=float,
        help="override the model's stored threshold (drops its rule and uncertain band)",
    )
    p.add_argument("--faces", action="store_true", help="detect and crop the largest face first")
    add_face_options(p)
    p.add_argument("--frames", type=int, default=16, help="frames sampled per video")
    p.add_argument("--per-frame", action="store_true", help="also one row per video frame")
    p.add_argument("--explain", metavar="DIR", help="write an explanation PNG per image here")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--workers",
        type=at_least(int, 0),
        default=2,
        help="files decoded in parallel (0: one at a time)",
    )
    p.add_argument(
        "--decode",
        choices=("thread", "process"),
        default="thread",
        help="decode in threads (default; Pillow and OpenCV release the GIL) or in processes",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_detect)
