"""``mfclip protocol list|show|run``: the paper's protocols from the command line."""

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


def _run(args: argparse.Namespace) -> int:
    from ..protocol import run_protocol

    out = Path(args.out) if args.out else Path("runs") / f"protocol-{Path(args.name).stem}"
    run_protocol(
        args.name, args.root, out, args.overrides, bootstrap=args.bootstrap, progress=not args.quiet
    )
    print((out / "report.md").read_text())
    print(f"report: {out / 'report.md'} (per-test reports under {out}/<train>/eval/)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protocol", help="run the paper's evaluation protocols")
    psub = p.add_subparsers(dest="protocol_command", metavar="ACTION", required=True)
    ls = psub.add_parser("list", help="bundled protocols")
    ls.set_defaults(func=_list)
    show = psub.add_parser("show", help="print a bundled protocol's YAML")
    show.add_argument("name")
    show.set_defaults(func=_show)
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
    run.add_argument("--bootstrap", type=int, default=1000)
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("overrides", nargs="*", help="training overrides, e.g. epochs=10 amp=none")
    run.set_defaults(func=_run)
