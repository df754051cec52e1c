"""``mfclip detect PATH... --model DIR``: score images, folders, globs, videos and list files.

Under ``torchrun`` every rank scores its share of the inputs and rank 0 writes the one results
file, in input order (:mod:`mfclip.inference.streaming`); ``--resume`` continues a killed run
(:mod:`mfclip.inference.results`).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import add_face_options, at_least, face_detector_kwargs, in_process_group

__all__ = ["register"]

log = logging.getLogger(__name__)


def _inputs(args: argparse.Namespace, env: Any) -> tuple[Iterator[str], int | None]:
    """The inputs (a lazy stream for ``--from-list``) and their number when it is known."""
    from ..inference.inputs import expand_inputs
    from ..inference.streaming import read_list

    if bool(args.paths) == bool(args.from_list):
        raise ValueError("give input paths or --from-list FILE, not both or neither")
    if args.from_list:
        if args.from_list == "-" and env.distributed:
            raise ValueError(
                "--from-list - (stdin) runs in one process; under torchrun pass a list file "
                "that every rank can read"
            )
        return read_list(args.from_list), None
    # Rank 0 walks the folders; every rank then shards the very same list.
    paths = env.broadcast_object(expand_inputs(args.paths) if env.is_main else None)
    if not paths:
        raise ValueError("no input files found")
    return iter(paths), len(paths)


def _resume(args: argparse.Namespace, env: Any, inputs: Iterator[str]) -> tuple[Iterator, int]:
    """Skip the inputs already in ``--out`` (rank 0 reads it and tells the other ranks)."""
    from ..inference.results import ResumeError, resume_results

    if not args.resume:
        return inputs, 0
    if not args.out:
        raise ValueError("--resume needs --out (the results file to continue)")
    done, problem = 0, None
    if env.is_main:
        try:
            done = resume_results(Path(args.out), inputs)
        except ResumeError as exc:
            problem = str(exc)
    done, problem = env.broadcast_object((done, problem))  # every rank stops, or none
    if problem:
        raise ResumeError(problem)
    return (inputs if env.is_main else itertools.islice(inputs, done, None)), done


def _detect(args: argparse.Namespace) -> int:
    return in_process_group(_run, args)


def _run(args: argparse.Namespace, env: Any) -> int:
    from tqdm.auto import tqdm

    from ..inference.detector import Detector
    from ..inference.results import ResultsWriter
    from ..inference.streaming import detect_sharded

    inputs, total = _inputs(args, env)
    inputs, start = _resume(args, env, inputs)
    detector = Detector.from_pretrained(
        args.model,
        device=str(env.device),
        frames=args.frames,
        threshold=args.threshold,
        **face_detector_kwargs(args),
    )
    out_path = Path(args.out) if args.out else None
    writer = ResultsWriter(out_path, append=start > 0) if env.is_main else None
    left = None if total is None else total - start
    bar = tqdm(
        total=left, unit=" images", desc="detect", dynamic_ncols=True,
        disable=not env.is_main or args.quiet or left in (0, 1),
    )  # fmt: skip
    scored = failed = images = 0
    verdicts: dict[str, int] = {}
    started = time.perf_counter()
    try:
        rows = detect_sharded(
            detector, inputs, env, start, per_rank=4 * args.batch_size,
            batch_size=args.batch_size, workers=args.workers, decode=args.decode,
            per_frame=args.per_frame,
        )  # fmt: skip
        for index, rank, dets in rows:
            for det in dets:
                writer.write(det.to_dict())
            det = dets[-1]
            bar.update(1)
            if det.ok:
                scored += 1
                images += det.frames or 1
                verdicts[det.label] = verdicts.get(det.label, 0) + 1
                if args.explain and det.kind == "image":
                    Path(args.explain).mkdir(parents=True, exist_ok=True)
                    target = Path(args.explain) / f"{index:05d}_{Path(det.source).stem}.png"
                    detector.explain(det.source).save(target)
            else:
                failed += 1
                who = f"rank {rank}: " if env.distributed else ""
                log.warning("%s%s: %s", who, det.source, det.error)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    if env.is_main and not args.quiet:
        wall = time.perf_counter() - started
        _summary(env, detector.stats, (scored, failed, images, start), wall, out_path)
        if verdicts:
            counts = ", ".join(f"{n} {label}" for label, n in sorted(verdicts.items()))
            print(f"verdicts: {counts}; {detector.operating_point.summary()}", file=sys.stderr)
        if out_path:
            print(f"results: {out_path}", file=sys.stderr)
        if args.explain:
            print(f"explanations: {args.explain}", file=sys.stderr)
    if not env.is_main:
        return 0
    return 0 if scored or start else 1


def _summary(
    env: Any, stats: Any, counts: tuple[int, int, int, int], wall: float, out: Path | None
) -> None:
    """The line that says what was scored, how fast, and whether decoding kept up."""
    scored, failed, images, start = counts
    resumed = f" (resumed after the {start} already in {out})" if start else ""
    where = f" on {env.world_size} processes" if env.distributed else ""
    rate = images / wall if wall > 0 else 0.0
    print(
        f"scored {scored}, failed {failed} of {scored + failed} input(s){resumed}; {images} "
        f"image(s) in {wall:.1f}s{where} ({rate:.1f} images/s; rank 0 waiting for decoded "
        f"images {100 * stats.wait_fraction:.0f}% of the time)",
        file=sys.stderr,
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="score images, folders, globs and videos")
    p.add_argument("paths", nargs="*", help="files, folders (recursive), globs, videos")
    p.add_argument(
        "--from-list",
        metavar="FILE",
        help="read input paths from FILE, one per line ('-': stdin; blank and '#' lines "
        "skipped), streamed: memory stays flat however long the list",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue --out from a killed run: skip the inputs already in it, append the rest",
    )
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
