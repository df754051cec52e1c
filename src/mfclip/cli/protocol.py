"""``mfclip protocol list|show|ablations|run``: the paper's protocols and ablation studies."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def _list(args: argparse.Namespace) -> int:
    from ..protocol import list_protocols, load_protocol

    for name in list_protocols():
        protocol = load_protocol(name)
        roots = ", ".join(
            f"{k} ({v.get('layout', 'folders')})" for k, v in protocol.datasets.items()
        )
        print(f"{name:32s} datasets: {roots}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from importlib import resources

    from ..protocol import PROTOCOL_DIR, list_protocols

    if args.name not in list_protocols():
        raise ValueError(f"unknown protocol '{args.name}'; see `mfclip protocol list`")
    path = resources.files("mfclip").joinpath(PROTOCOL_DIR, f"{args.name}.yaml")
    print(path.read_text(), end="")
    return 0


def _ablations(args: argparse.Namespace) -> int:
    from ..protocol import load_ablations

    registry = load_ablations(args.ablations_file)
    groups: dict[str, list[str]] = {}
    for row in registry.values():
        for group in row.groups:
            groups.setdefault(group, []).append(row.name)
    print(f"{'ablation':20s} {'groups':36s} change / description")
    for row in registry.values():
        paper = f" (paper: {row.paper})" if row.paper else ""
        print(f"{row.name:20s} {','.join(row.groups):36s} {row.description}{paper}")
        print(f"{'':57s} {row.describe_change()}")
    print()
    for group, names in sorted(groups.items()):
        print(f"group {group}: {', '.join(names)}")
    return 0


def _seeds(text: str) -> list[int]:
    """``3`` -> seeds 0, 1, 2; ``0,5,7`` -> those seeds."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",")]
            if len(set(seeds)) != len(seeds):
                raise argparse.ArgumentTypeError(f"--seeds lists a seed twice: {text!r}")
            return seeds
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a count or a list of seeds, got {text!r}"
        ) from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"--seeds must be >= 1, got {count}")
    return list(range(count))


def _run(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path("runs") / f"protocol-{Path(args.name).stem}"
    if args.ablations is None:
        if args.seeds != [0] or args.ablations_file:
            raise ValueError("--seeds and --ablations-file need --ablations")
        from ..protocol import run_protocol

        run_protocol(
            args.name,
            args.root,
            out,
            args.overrides,
            bootstrap=args.bootstrap,
            progress=not args.quiet,
            metrics=args.metrics,
        )
        print((out / "report.md").read_text())
        print(f"report: {out / 'report.md'} (per-test reports under {out}/<train>/eval/)")
        return 0
    from ..protocol import StudyOptions, run_ablations

    options = StudyOptions(
        ablations=args.ablations,
        seeds=args.seeds,
        registry=args.ablations_file,
        overrides=args.overrides,
        metrics=args.metrics,
        bootstrap=args.bootstrap,
        progress=not args.quiet,
    )
    table = run_ablations(args.name, args.root, out, options)
    print(table.to_markdown())
    print(f"table: {out / 'ablations.md'} (also .csv, .json, .png; runs under {out}/ablations/)")
    if table.failed:
        print(f"{len(table.failed)} run(s) failed; their errors are above and in row.json")
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protocol", help="run the paper's evaluation protocols and ablations")
    psub = p.add_subparsers(dest="protocol_command", metavar="ACTION", required=True)
    ls = psub.add_parser("list", help="bundled protocols")
    ls.set_defaults(func=_list)
    show = psub.add_parser("show", help="print a bundled protocol's YAML")
    show.add_argument("name")
    show.set_defaults(func=_show)
    abl = psub.add_parser("ablations", help="the named ablations and their groups")
    abl.add_argument("--ablations-file", help="a registry YAML instead of the bundled one")
    abl.set_defaults(func=_ablations)
    run = psub.add_parser("run", help="index, train and evaluate a whole protocol")
    run.add_argument("name", help="bundled protocol name or a protocol YAML")
    run.add_argument(
        "--root",
        action="append",
        required=True,
        metavar="[NAME=]PATH",
        help="dataset root (repeat as NAME=PATH for multi-dataset protocols)",
    )
    run.add_argument("--out", help="output folder (default: runs/protocol-<name>)")
    run.add_argument(
        "--ablations",
        metavar="SPEC",
        help="run an ablation study: 'all', groups (quick, components, released, baselines, "
        "recipes) and/or row names, comma-separated; see `mfclip protocol ablations`",
    )
    run.add_argument(
        "--seeds",
        type=_seeds,
        default=[0],
        metavar="N|S1,S2",
        help="with --ablations: repeat every row with seeds 0..N-1 (or the listed seeds)",
    )
    run.add_argument("--ablations-file", help="with --ablations: your own registry YAML")
    run.add_argument(
        "--metrics",
        choices=("mfclip", "deepfakebench"),
        default="mfclip",
        help="metric definitions: mfclip's, or DeepfakeBench's (EER at the nearest ROC point, "
        "ACC at raw p > 0.5, video AUC by parent folder) to sit beside published tables",
    )
    run.add_argument("--bootstrap", type=int, default=1000)
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("overrides", nargs="*", help="training overrides, e.g. epochs=10 amp=none")
    run.set_defaults(func=_run)
