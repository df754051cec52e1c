"""Streaming detection: peak memory of ``mfclip detect --from-list`` stays flat in the inputs.

Writes a few small PNGs to a temporary folder and list files naming them over and over
(1,000 / 5,000 / 10,000 entries by default), then runs ``python -m mfclip detect --from-list
LIST --out OUT.jsonl`` on each in a fresh process (tiny model, CPU, ``OMP_NUM_THREADS`` =
``--threads``, default 1). The peak RSS of each run is its ``ru_maxrss`` from ``wait4``: the
whole process, model and decoding threads included. The target: peak RSS at the largest list
within 5 % (or 16 MiB) of the smallest, i.e. nothing grows with the number of inputs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common

NAME = "streaming"
HEADERS = ["inputs", "wall s", "inputs/s", "rows", "peak RSS MiB", "vs smallest MiB"]


def make_inputs(directory: Path, count: int = 8, size: int = 64) -> list[str]:
    """``count`` small PNGs of noise (the same files are listed many times)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def run_list(model: Path, listing: Path, out: Path, threads: int) -> dict[str, Any]:
    """One ``detect --from-list`` run in a fresh process: wall time and its peak RSS."""
    cmd = [common.python(), "-m", "mfclip", "detect", "--model", str(model), "--from-list",
           str(listing), "--out", str(out), "--quiet", "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=common.ROOT, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    with out.open() as fh:
        rows = sum(1 for _ in fh)
    return {"wall_s": wall, "rows": rows, "peak_rss_mib": usage.ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = common.add_common_args(argparse.ArgumentParser(description=__doc__))
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="list lengths")
    args = parser.parse_args(argv)
    common.setup(args)
    sizes = args.sizes or ([200, 400] if args.quick else [1000, 5000, 10000])
    threads = args.threads or 1
    tmp = Path(tempfile.mkdtemp(prefix="mfclip-bench-streaming-"))
    runs = []
    try:
        model = common.build_model("tiny").save_pretrained(tmp / "model")
        images = make_inputs(tmp / "images")
        for n in sizes:
            listing = tmp / f"list{n}.txt"
            listing.write_text("".join(images[i % len(images)] + "\n" for i in range(n)))
            run = run_list(model, listing, tmp / f"out{n}.jsonl", threads)
            if run["rows"] != n:
                raise RuntimeError(f"{n} inputs gave {run['rows']} rows")
            runs.append({"inputs": n, **run, "inputs_per_s": n / run["wall_s"]})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = runs[0]["peak_rss_mib"]
    for r in runs:
        r["growth_mib"] = r["peak_rss_mib"] - base
    rows = [[r["inputs"], r["wall_s"], r["inputs_per_s"], r["rows"], r["peak_rss_mib"],
             r["growth_mib"]] for r in runs]  # fmt: skip
    common.print_table(
        f"detect --from-list, tiny model, CPU, {threads} thread(s): peak RSS per run",
        HEADERS,
        rows,
    )
    growth = runs[-1]["growth_mib"]
    allowed = max(16.0, 0.05 * base)
    result = {
        "quick": args.quick,
        "threads": threads,
        "runs": runs,
        "target": {
            "name": "peak RSS flat in the number of --from-list inputs",
            "growth_mib": growth,
            "allowed_mib": allowed,
            "passed": growth <= allowed,
        },
    }
    common.write_result(NAME, result, args.out_dir)
    return result


if __name__ == "__main__":
    main()
