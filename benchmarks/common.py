"""Shared helpers: machine info, robust timing, tables, JSON results, benchmark models.

Longer than 450 lines because every benchmark script and the report build their rows and tables
here, so that the figures of a table are computed once (see docs/performance.md).

Timing method (the development machines are small and shared): every measurement is warmed
up, repeated, and reported as median with min/max; two configurations that are compared as a
ratio are measured *interleaved* (A, B, B, A, ...) in one process so that load changes on the
machine hit both sides alike.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"

__all__ = [
    "RESULTS_DIR",
    "ROOT",
    "LoadMonitor",
    "add_common_args",
    "build_model",
    "interleaved",
    "machine_info",
    "measure",
    "peak_memory",
    "pipeline_rows",
    "print_table",
    "selection_kernels",
    "selection_scaling_rows",
    "selection_throughput_rows",
    "setup",
    "summarize",
    "target_cells",
    "torch_selection_memory_note",
    "vit_b16_backbone_dir",
    "write_result",
]


# ---------------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on (stored in every result file)."""
    import numpy
    import transformers

    import mfclip

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "device": device,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch_threads": torch.get_num_threads(),
        "load_average": load,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "mfclip": mfclip.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
    }


# ---------------------------------------------------------------------------------- load
def _busy_jiffies() -> int | None:
    """Busy CPU time of the whole machine (all processes) from /proc/stat, in clock ticks."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]) - idle
    return None


def _own_cpu_s() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class LoadMonitor:
    """How much of the machine *other* processes used while a benchmark ran.

    ``others_share`` = (machine busy time - this process's and its children's CPU time) /
    (wall time x CPUs). Near 0 on a quiet machine; 0.5 means other work took half the cores.
    """

    def __init__(self) -> None:
        self.wall0 = time.perf_counter()
        self.busy0 = _busy_jiffies()
        self.own0 = _own_cpu_s()

    def report(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.wall0
        busy1 = _busy_jiffies()
        if self.busy0 is None or busy1 is None or wall <= 0:
            return {"wall_s": wall, "others_share": None}
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        busy = (busy1 - self.busy0) / hz
        own = _own_cpu_s() - self.own0
        cpus = os.cpu_count() or 1
        return {
            "wall_s": wall,
            "own_cpu_s": own,
            "machine_busy_s": busy,
            "others_share": max(busy - own, 0.0) / (wall * cpus),
        }


_MONITOR: LoadMonitor | None = None


def machine_busy(seconds: float = 5.0) -> float | None:
    """Share of all CPUs busy (any process) over the next ``seconds``; None without /proc."""
    b0 = _busy_jiffies()
    start = time.perf_counter()
    time.sleep(seconds)
    b1 = _busy_jiffies()
    if b0 is None or b1 is None:
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return (b1 - b0) / hz / ((time.perf_counter() - start) * (os.cpu_count() or 1))


def wait_until_quiet(max_wait_s: float, threshold: float = 0.15) -> float | None:
    """Wait (up to ``max_wait_s``) until other processes leave the CPUs mostly idle.

    Returns the last busy share seen. Meant for shared machines: call it before a benchmark
    while nothing else of ours runs.
    """
    deadline = time.perf_counter() + max_wait_s
    busy = machine_busy()
    while busy is not None and busy > threshold and time.perf_counter() < deadline:
        print(f"machine {100 * busy:.0f}% busy, waiting for it to quiet down", flush=True)
        time.sleep(15)
        busy = machine_busy()
    return busy


# ---------------------------------------------------------------------------------- timing
def summarize(samples: Sequence[float], items: int = 1) -> dict[str, Any]:
    """Seconds per call -> median/min/max, spread and items per second (median and best)."""
    med = statistics.median(samples)
    lo, hi = min(samples), max(samples)
    return {
        "repeats": len(samples),
        "median_s": med,
        "min_s": lo,
        "max_s": hi,
        "spread": (hi - lo) / med if med > 0 else 0.0,
        "items_per_s": items / med if med > 0 else float("inf"),
        "items_per_s_best": items / lo if lo > 0 else float("inf"),
        "samples_s": list(samples),
    }


def measure(
    fn: Callable[[], Any], warmup: int = 1, repeats: int = 3, max_s: float | None = None
) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls.

    ``max_s`` stops early (after at least 2 timed calls) once that much time is spent, so a
    disturbed machine cannot stretch a benchmark without bound.
    """
    for _ in range(warmup):
        fn()
    out: list[float] = []
    begin = time.perf_counter()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
        if max_s is not None and len(out) >= 2 and time.perf_counter() - begin > max_s:
            break
    return out


def interleaved(
    fns: dict[str, Callable[[], Any]], warmup: int = 1, repeats: int = 3
) -> dict[str, list[float]]:
    """Time several functions round-robin (order reversed every round); seconds per call."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            gc.collect()
            start = time.perf_counter()
            fns[name]()
            out[name].append(time.perf_counter() - start)
    return out


# ---------------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _reset_peak() -> bool:
    """Reset the process's peak-RSS mark (Linux >= 4.0: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_memory(fn: Callable[[], Any]) -> dict[str, Any]:
    """Peak resident memory of one call of ``fn`` above the RSS just before it (MiB).

    Linux: the peak-RSS mark (VmHWM) is reset right before the call and read after it, so the
    figure is the call's own high-water mark (activations, workspaces, allocator slack) over
    what was resident already (weights, inputs). Elsewhere ``getrusage`` maxrss deltas are
    used, which undercount when the process peaked higher earlier. Run it in a fresh process.
    """
    import resource

    gc.collect()
    before = _status_kib("VmRSS")
    reset = _reset_peak() and before is not None
    rusage0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    if reset:
        peak = _status_kib("VmHWM") or 0
        method = "VmHWM after clear_refs reset, minus VmRSS before"
        base = before or 0
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        base = rusage0
        method = "getrusage ru_maxrss delta"
    return {
        "method": method,
        "rss_before_mib": (before or base) / 1024,
        "peak_rss_mib": peak / 1024,
        "peak_delta_mib": max(peak - base, 0) / 1024,
    }


# ---------------------------------------------------------------------------------- output
def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Print (and return) a small aligned text table."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    text = "\n".join(lines)
    print(text + "\n", flush=True)
    return text


def write_result(name: str, payload: dict[str, Any], out_dir: Path | None = None) -> Path:
    """Write ``<out_dir>/<name>.json`` atomically, with machine info and a timestamp."""
    out_dir = Path(out_dir or os.environ.get("MFCLIP_BENCH_RESULTS") or RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "benchmark": name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load": _MONITOR.report() if _MONITOR is not None else None,
        **payload,
    }
    share = (data["load"] or {}).get("others_share")
    if share is not None and share > 0.15:
        print(
            f"note: other processes used {100 * share:.0f}% of the machine during this run; "
            "timings (2-thread ones above all) are disturbed",
            flush=True,
        )
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}", flush=True)
    return path


# ---------------------------------------------------------------------------------- args
def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--quick", action="store_true", help="smallest sizes and repeats")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument("--out-dir", type=Path, default=None, help="where the JSON goes")
    return parser


def setup(args: argparse.Namespace) -> None:
    """Offline hub, quiet logs, thread count, deterministic seeds; starts the load monitor."""
    global _MONITOR
    _MONITOR = LoadMonitor()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with contextlib.suppress(Exception):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()


# ---------------------------------------------------------------------------------- models
def vit_b16_backbone_dir() -> Path:
    """A ViT-B/16-sized CLIP config + the prompt tokenizer in a cache dir (no weights).

    Models built from it use ``backbone.pretrained=false``: the architecture comes from the
    config, the weights are random (offline, and the speed does not depend on them).
    """
    from mfclip.model.backbone import build_prompt_tokenizer, prompt_clip_config

    root = Path(os.environ.get("MFCLIP_BENCH_CACHE") or Path(tempfile.gettempdir()))
    target = root / "mfclip-bench" / "clip-vit-b16-random"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    tok = build_prompt_tokenizer()
    vision = dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        patch_size=16,
        image_size=224,
    )
    config = prompt_clip_config(tok, vision=vision, projection_dim=512)
    config.save_pretrained(target)
    tok.save_pretrained(str(target))
    return target


MODEL_SIZES = ("tiny", "vit-b16")


def build_model(size: str, overrides: Sequence[str] = ()) -> Any:
    """``tiny`` (built-in offline backbone) or ``vit-b16`` (random weights), on the CPU."""
    import mfclip

    if size == "tiny":
        model = mfclip.create_model("mfclip-tiny", overrides=list(overrides))
    elif size == "vit-b16":
        backbone = {"name": str(vit_b16_backbone_dir()), "pretrained": False}
        model = mfclip.create_model("mfclip-vit-b16", overrides=list(overrides), backbone=backbone)
    else:
        raise ValueError(f"unknown model size {size!r}; choose from {MODEL_SIZES}")
    return model


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Temporarily run torch with ``n`` intra-op threads (``None``: unchanged)."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def python() -> str:
    """The interpreter running the benchmarks (for subprocesses)."""
    return sys.executable


def inference_rows(stats: dict[str, Any], memory: dict[str, Any]) -> list[list[Any]]:
    """Rows of the inference table (bare tower, MFCLIP), shared by the script and the report."""
    nan = float("nan")
    return [
        [
            name,
            stats[name]["items_per_s"],
            stats[name]["items_per_s_best"],
            stats[name]["median_s"],
            stats[name]["spread"],
            memory.get(name, {}).get("peak_delta_mib", nan),
            memory.get(name, {}).get("peak_rss_mib", nan),
        ]
        for name in ("bare", "mfclip")
    ]


PIPELINE_HEADERS = ["model", "decode", "workers", "images", "wall s", "waiting s", "model s",
                    "waiting %", "images/s", "first result s", "CPU ms/image"]  # fmt: skip


def pipeline_rows(runs: list[dict[str, Any]]) -> list[list[Any]]:
    """Rows of the input-pipeline table (:data:`PIPELINE_HEADERS`), for the script and report."""
    return [
        [r["size"], r.get("decode", "process" if r["workers"] else "inline"), r["workers"],
         r["images"], r["total_s"], r["wait_s"], r["model_s"], 100 * r["wait_fraction"],
         r["images_per_s"], r.get("first_result_s"), r.get("cpu_ms_per_image", "-")]
        for r in runs
    ]  # fmt: skip


SELECTION_THROUGHPUT_HEADERS = ["kernel", "threads", "batch", "images/s (median)",
                                "images/s (best)", "spread", "x skimage"]  # fmt: skip


def selection_throughput_rows(throughput: list[dict[str, Any]]) -> list[list[Any]]:
    """Rows of the selection throughput table, shared by the script and the report."""
    keys = ("threads", "batch", "items_per_s", "items_per_s_best", "spread", "ratio_vs_skimage")
    return [[t.get("kernel", "torch"), *(t[k] for k in keys)] for t in throughput]


def selection_kernels() -> list[str]:
    """The selection kernels to time: torch always, numba where ``mfclip[fast]`` is installed
    (listed last: it is the one ``kernel="auto"`` uses then)."""
    from mfclip.model.selection import _resolve_kernel

    fused = _resolve_kernel("auto", torch.device("cpu")) == "numba"
    return ["torch", "numba"] if fused else ["torch"]


def target_cells(target: dict[str, Any]) -> tuple[str, str]:
    """``(measured, needed)`` of a benchmark's target, for the run_all and report summaries."""
    if "ratio" in target:
        measured = f"{target['ratio']:.3g}x"
        if "ratio_best" in target:
            measured += f" (best-run ratio {target['ratio_best']:.3g}x)"
        if "ratio_one_thread" in target:
            measured += f"; 1 thread {target['ratio_one_thread']:.3g}x"
        if "ratio_torch_kernel" in target:
            measured += (
                f"; {target['kernel']} kernel (torch kernel {target['ratio_torch_kernel']:.3g}x)"
            )
        return measured, f">= {target['threshold']}x"
    waits = ", ".join(f"{k} {100 * v:.1f}%" for k, v in target["wait_fraction"].items())
    return f"wait {waits}", f"< {100 * target['threshold']:.0f}%"


def torch_selection_memory_note(memory: dict[str, Any]) -> str | None:
    """The line on MFCLIP's memory without numba loaded, when it was measured."""
    m = memory.get("mfclip_torch_selection")
    if not m:
        return None
    return (
        f"mfclip with the torch selection kernel (numba not loaded): peak "
        f"+{m['peak_delta_mib']:.0f} MiB, peak RSS {m['peak_rss_mib']:.0f} MiB"
    )


def selection_scaling_rows(scaling: list[dict[str, Any]]) -> list[list[Any]]:
    """Rows of the selection-vs-candidates table, shared by the script and the report."""
    keys = ("stride", "candidates", "batch", "ms_per_image", "items_per_s",
            "skimage_items_per_s", "ratio_vs_skimage")  # fmt: skip
    return [[s[k] for k in keys] for s in scaling]
