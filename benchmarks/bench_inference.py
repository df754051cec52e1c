"""Target 2: MFCLIP inference vs the bare CLIP vision tower, images/s and peak memory.

``bare``: ``clip.vision_model`` + ``visual_projection`` alone (the model's own global encoder,
same weights). ``mfclip``: the whole inference path, vision tower + noise branch (selection,
SRM, encoder) + fusion + head, as ``model(pixel_values)`` in eval mode. Both run under
``torch.inference_mode()`` on the same CLIP-normalised batch, interleaved in one process.

Peak memory: each configuration runs in a fresh subprocess (model built, a warm-up pass at
batch 2), then the peak-RSS mark is reset (``/proc/self/clear_refs``) and one more pass is run; the
figure is VmHWM after the pass minus VmRSS before it (see ``common.peak_memory``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from typing import Any

import torch

from benchmarks import common
from mfclip.model.selection import KERNEL_ENV

NAME = "inference"


def make_inputs(model: Any, batch: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    size = model.config.preprocess.image_size
    return torch.rand(batch, 3, size, size, generator=gen)  # [0, 1]: the model normalises


def runners(model: Any, x: torch.Tensor) -> dict[str, Any]:
    """The two measured callables (inference mode, eval)."""
    enc = model.visual.global_encoder  # CLIPVisionEncoder: vision_model + visual_projection
    normalised = model.normalize(x)  # the bare tower takes CLIP-normalised pixels

    def bare() -> Any:
        with torch.inference_mode():
            return enc(normalised)

    def mfclip() -> Any:
        with torch.inference_mode():
            return model(x)

    return {"bare": bare, "mfclip": mfclip}


def components(model: Any, x: torch.Tensor, repeats: int) -> dict[str, Any]:
    """Time of the noise branch's parts on the same batch (one warm-up, median of repeats)."""
    from mfclip.model.selection import select_richest_patch

    noise = model.visual.noise
    enc = noise.encoder
    images01 = x
    patches, _, _ = select_richest_patch(images01, noise.patch_size, noise.stride)
    srm = noise.srm(patches)
    captured: list[torch.Tensor] = []
    hook = enc.to_tokens.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    with torch.inference_mode():
        enc(srm)  # captures the stem's tokens, the input of the token transformer
    hook.remove()
    tokens = captured[0]
    parts = {
        "normalize": lambda: model.visual.normalize(x),
        "selection": lambda: select_richest_patch(images01, noise.patch_size, noise.stride),
        "srm": lambda: noise.srm(patches),
        "noise_stem": lambda: enc.stem(srm),
        "noise_transformer": lambda: enc.proj(enc.transformer(enc.to_tokens(tokens))),
        "noise_branch": lambda: noise(images01),
    }
    out = {}
    with torch.inference_mode():
        for name, fn in parts.items():
            out[name] = common.summarize(common.measure(fn, 1, repeats), len(x))["median_s"]
    return out


def profile_top(fn: Any, rows: int = 15) -> list[dict[str, Any]]:
    """Top operators by self CPU time for one call of ``fn`` (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    table = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in table) or 1.0
    return [
        {
            "op": e.key,
            "self_cpu_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total,
            "calls": e.count,
        }
        for e in table[:rows]
    ]


def memory_child(size: str, which: str, batch: int) -> dict[str, Any]:
    """Run in a fresh process: peak memory of one pass of ``which``."""
    model = common.build_model(size).eval()
    x = make_inputs(model, batch)
    runners(model, make_inputs(model, 2, seed=1))[which]()  # warm-up: kernels, caches
    return common.peak_memory(runners(model, x)[which])


def measure_memory(size: str, batch: int, threads: int | None) -> dict[str, Any]:
    """Peak memory of each path in a fresh process; with numba installed, MFCLIP is measured
    a second time with the torch selection kernel (``mfclip_torch_selection``), because
    loading numba's LLVM adds resident memory of its own."""
    configs = [("bare", "bare", {}), ("mfclip", "mfclip", {})]
    if "numba" in common.selection_kernels():
        configs.append(("mfclip_torch_selection", "mfclip", {KERNEL_ENV: "torch"}))
    out = {}
    for name, which, env in configs:
        cmd = [common.python(), "-m", "benchmarks.bench_inference", "--memory-child", which]
        cmd += ["--size", size, "--batch", str(batch)]
        if threads:
            cmd += ["--threads", str(threads)]
        proc = subprocess.run(
            cmd,
            cwd=common.ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
            env={**os.environ, **env},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"memory child failed:\n{proc.stderr[-2000:]}")
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = common.add_common_args(argparse.ArgumentParser(description=__doc__))
    parser.add_argument("--size", choices=common.MODEL_SIZES, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--profile", action="store_true", help="add torch.profiler top ops")
    parser.add_argument("--memory-child", choices=("bare", "mfclip"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    common.setup(args)
    size = args.size or ("tiny" if args.quick else "vit-b16")
    batch = args.batch or (8 if args.quick else 32)
    if args.memory_child:
        print(json.dumps(memory_child(size, args.memory_child, batch)))
        return {}
    repeats = args.repeats or 3

    model = common.build_model(size).eval()
    x = make_inputs(model, batch)
    fns = runners(model, x)
    for warm in runners(model, make_inputs(model, 2, seed=1)).values():
        warm()  # kernels and caches; a full-size warm-up pass would double the run time
    times = common.interleaved(fns, warmup=0, repeats=repeats)
    stats = {name: common.summarize(t, batch) for name, t in times.items()}
    ratio = stats["mfclip"]["items_per_s"] / stats["bare"]["items_per_s"]
    ratio_best = stats["mfclip"]["items_per_s_best"] / stats["bare"]["items_per_s_best"]
    parts = components(model, x, repeats)
    memory = {} if args.no_memory else measure_memory(size, batch, args.threads)

    rows = common.inference_rows(stats, memory)
    common.print_table(
        f"Inference, {size}, batch {batch}, {torch.get_num_threads()} threads "
        f"(mfclip/bare = {ratio:.3f} median, {ratio_best:.3f} best)",
        ["path", "img/s", "img/s best", "s/batch", "spread", "peak +MiB", "peak RSS MiB"],
        rows,
    )
    note = common.torch_selection_memory_note(memory)
    if note:
        print(note + "\n")
    common.print_table(
        "Noise-branch parts (s per batch, median)",
        ["part", "s/batch", "share of mfclip"],
        [[k, v, v / stats["mfclip"]["median_s"]] for k, v in parts.items()],
    )
    result: dict[str, Any] = {
        "quick": args.quick,
        "size": size,
        "batch": batch,
        "params": model.param_counts(),
        "stats": stats,
        "components_s": parts,
        "memory": memory,
        "target": {
            "name": "mfclip inference images/s >= 0.85x bare CLIP vision tower",
            "ratio": ratio,
            "ratio_best": ratio_best,
            "threshold": 0.85,
            "passed": ratio >= 0.85,
        },
    }
    if args.profile:
        result["profile_mfclip"] = profile_top(fns["mfclip"])
        common.print_table(
            "torch.profiler, mfclip inference, top ops by self CPU",
            ["op", "self ms", "share", "calls"],
            [[p["op"], p["self_cpu_ms"], p["share"], p["calls"]] for p in result["profile_mfclip"]],
        )
    common.write_result(NAME, result, args.out_dir)
    return result


if __name__ == "__main__":
    main()
