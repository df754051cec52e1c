"""Run every benchmark (each in a fresh process), then print and store the target summary.

``make bench`` runs this with the default sizes (ViT-B/16-size models with random weights;
about 8 minutes on a 2-core CPU); ``--quick`` uses the tiny model and small repeat counts
(under a minute). Results go to ``benchmarks/results/<name>.json`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import common

BENCHMARKS = ("selection", "inference", "training", "scaling", "pipeline")


def run_one(name: str, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    cmd = [common.python(), "-m", f"benchmarks.bench_{name}", "--out-dir", str(out_dir)]
    if args.quick:
        cmd.append("--quick")
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.wait_quiet:
        common.wait_until_quiet(args.wait_quiet)
    print(f"=== {name}: {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=common.ROOT, check=False)
    elapsed = time.perf_counter() - start
    path = out_dir / f"{name}.json"
    fresh = proc.returncode == 0 and path.is_file()
    fresh = fresh and path.stat().st_mtime >= time.time() - elapsed - 1
    data = json.loads(path.read_text()) if fresh else {}
    print(f"=== {name}: {'ok' if fresh else 'FAILED'} in {elapsed:.0f} s\n", flush=True)
    return {"name": name, "ok": fresh, "seconds": elapsed, "data": data}


def summary_rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for r in results:
        target = r["data"].get("target")
        if not target:
            status = "n/a" if r["ok"] else "error"
            rows.append([r["name"], "-", "-", status, f"{r['seconds']:.0f}"])
            continue
        value, need = common.target_cells(target)
        status = "PASS" if target["passed"] else "FAIL"
        if not target["passed"] and any(target.get("passed_by_size", {}).values()):
            by_size = target["passed_by_size"].items()
            status = " ".join(f"{k}:{'PASS' if v else 'FAIL'}" for k, v in by_size)
        rows.append([r["name"], value, need, status, f"{r['seconds']:.0f}"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = common.add_common_args(argparse.ArgumentParser(description=__doc__))
    parser.add_argument(
        "--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS), help="a subset"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each benchmark, wait up to this long for other processes to go idle",
    )
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir or common.RESULTS_DIR)
    start = time.perf_counter()
    results = [run_one(name, args, out_dir) for name in args.only]
    total = time.perf_counter() - start
    rows = summary_rows(results)
    common.print_table(
        f"Targets (issue 6), {total:.0f} s in all",
        ["benchmark", "measured", "target", "status", "seconds"],
        rows,
    )
    targets = {r["name"]: r["data"].get("target") for r in results}
    runs = [{"name": r["name"], "ok": r["ok"], "seconds": r["seconds"]} for r in results]
    previous = out_dir / "summary.json"
    if set(args.only) != set(BENCHMARKS) and previous.is_file():
        # A partial run updates its entries and keeps the others of the last summary.
        old = json.loads(previous.read_text())
        targets = {**old.get("targets", {}), **targets}
        runs = [b for b in old.get("benchmarks", []) if b["name"] not in args.only] + runs
    common.write_result(
        "summary",
        {"quick": args.quick, "seconds": total, "targets": targets, "benchmarks": runs},
        out_dir,
    )
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
