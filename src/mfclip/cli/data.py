"""``mfclip data {index,check,faces}``: build, verify and face-crop manifests."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import FACE_MARGIN, FACE_SIZE

__all__ = ["register"]


def _kv(items: list[str]) -> dict[str, Any]:
    """``["weights=a.onnx", "score_threshold=0.7"]`` -> kwargs (numbers parsed)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--detector-arg '{item}' is not of the form key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def cmd_index(args: argparse.Namespace) -> int:
    from ..data.importers import index_dataset
    from ..data.manifest import write_manifest
    from ..data.splits import parse_ratios
    from ..data.summary import summarize

    options: dict[str, Any] = {}
    if args.layout == "deepfakebench":
        options.update(json_files=args.json, compression=args.compression)
    else:
        options.update(group_pattern=args.group_pattern, videos=args.videos)
    if args.layout == "folders":
        options.update(
            generator_depth=args.generator_depth,
            forgery_type=args.forgery_type,
            family=args.family,
            generator=args.generator,
        )
    result = index_dataset(
        args.root, args.layout, ratios=parse_ratios(args.ratios), salt=args.salt, **options
    )
    print(summarize(result.records))
    _print_warnings(result.warnings)
    if not result.records:
        return 1
    write_manifest(result.records, args.out)
    print(f"wrote {len(result.records)} rows to {args.out}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from ..data.check import check_records
    from ..data.manifest import read_manifest

    records = read_manifest(args.manifest)
    root = Path(args.root) if args.root else Path(args.manifest).parent
    problems = check_records(
        records, root, workers=args.workers, max_pixels=args.max_pixels or None
    )
    usable = sum(1 for r in records if r.status == "ok")
    for problem in problems:
        print(problem)
    print(f"checked {usable} files: {len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_faces(args: argparse.Namespace) -> int:
    from ..data.faces import FaceOptions, extract_faces
    from ..data.importers import index_dataset
    from ..data.manifest import read_manifest, write_manifest
    from ..data.summary import format_table

    source = Path(args.input)
    if source.is_dir():
        result = index_dataset(source, "folders", videos=True)
        _print_warnings(result.warnings)
        records, root = result.records, Path(".")
    else:
        records = read_manifest(source)
        root = Path(args.root) if args.root else source.parent
    options = FaceOptions(
        margin=args.margin,
        size=args.size,
        frames=args.frames,
        detector=args.detector,
        detector_kwargs=_kv(args.detector_arg),
        image_format=args.format,
    )
    out_dir = Path(args.out_dir)
    rows = extract_faces(records, root, out_dir, options, workers=args.workers)
    out = Path(args.out) if args.out else out_dir / "manifest.csv"
    write_manifest(rows, out)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    print(format_table(["status", "rows"], sorted(counts.items())))
    print(f"wrote {len(rows)} rows to {out}")
    return 0


def register(sub: Any) -> None:
    """Add ``data`` and its sub-commands to the top-level parser's sub-parsers."""
    data = sub.add_parser("data", help="index, check and face-crop datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data.set_defaults(func=lambda _args: (data.print_help(), 2)[1])

    index = data_sub.add_parser("index", help="write a manifest for a dataset folder")
    index.add_argument("root", help="dataset root folder")
    index.add_argument(
        "--layout", choices=["folders", "genface", "diff", "deepfakebench"], default="folders"
    )
    index.add_argument("--out", required=True, help="manifest to write (.csv or .jsonl)")
    index.add_argument(
        "--ratios", default="0.8,0.1,0.1", help="train,val,test for rows without an official split"
    )
    index.add_argument("--salt", default="", help="changes the hash-based split assignment")
    index.add_argument("--group-pattern", help="regex over the relative path; group 1 = group id")
    index.add_argument(
        "--videos", action="store_true", help="also index video files (for `data faces`)"
    )
    index.add_argument(
        "--generator-depth", type=int, default=1, help="folders: levels naming the generator"
    )
    index.add_argument("--forgery-type", help="folders: forgery type of all fakes")
    index.add_argument("--family", help="folders: generator family of all fakes")
    index.add_argument("--generator", help="folders: generator/source of all rows")
    index.add_argument(
        "--json", nargs="+", help="deepfakebench: JSON file(s) (default: ROOT/*.json)"
    )
    index.add_argument("--compression", default="c23", help="deepfakebench: compression level")
    index.set_defaults(func=cmd_index)

    check = data_sub.add_parser("check", help="decode every file of a manifest, report problems")
    check.add_argument("manifest")
    check.add_argument("--root", help="folder relative paths resolve against (default: manifest's)")
    check.add_argument("--workers", type=int, help="processes (default: all cores)")
    check.add_argument(
        "--max-pixels", type=int, default=178_956_970, help="decompression-bomb limit; 0 = none"
    )
    check.set_defaults(func=cmd_check)

    faces = data_sub.add_parser("faces", help="detect and crop faces (images and videos)")
    faces.add_argument("input", help="manifest, or a real/fake folder tree")
    faces.add_argument("--out-dir", required=True, help="where the crops go")
    faces.add_argument("--out", help="output manifest (default: OUT_DIR/manifest.csv)")
    faces.add_argument("--root", help="folder the input manifest's paths resolve against")
    faces.add_argument(
        "--margin", type=float, default=FACE_MARGIN, help="crop side / face box side"
    )
    faces.add_argument("--size", type=int, default=FACE_SIZE, help="output side in pixels")
    faces.add_argument("--frames", type=int, default=32, help="frames sampled per video")
    faces.add_argument("--detector", default="haar", help="haar, haar-alt2, yunet, or module:Class")
    faces.add_argument(
        "--detector-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="detector option, e.g. weights=yunet.onnx",
    )
    faces.add_argument("--format", choices=["png", "jpg"], default="png")
    faces.add_argument("--workers", type=int, help="processes (default: all cores)")
    faces.set_defaults(func=cmd_faces)
