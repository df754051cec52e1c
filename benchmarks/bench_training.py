"""Target 3: an MFCLIP training step vs a plain CLIP vision fine-tuning step (CE only).

``mfclip``: both towers, all three losses (L_cmc with SPA, L_kd, L_ce), the noise branch:
``out = model(x, tokens); model.loss(out, labels).total.backward(); opt.step()``.
``clip_ft``: the same factory with ``variant=clip_ft`` (CLIP image tower + head, CE only),
the baseline in the same harness. Same backbone size, batch and optimiser (Adam, as the
trainer's default); one warm-up step each at batch 2 (optimiser state, kernels), then timed
steps interleaved in one process.

The text side is driven by realistic label mixes: a batch holds few distinct prompts, and the
FLE encodes each distinct prompt once. The FLE's cost is also measured on its own, with and
without that de-duplication, to show what it buys.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks import common

NAME = "training"

#: Generator -> (forgery type, family), GenFace-like.
GENERATORS: dict[str, tuple[str, str]] = {
    "DDPM": ("entire_synthesis", "diffusion"),
    "FaceSwapper": ("face_swap", "gan"),
    "DiffAE": ("attribute_manipulation", "diffusion"),
    "LatentDiffusion": ("entire_synthesis", "diffusion"),
    "CollaborativeDiffusion": ("entire_synthesis", "diffusion"),
    "DiffFace": ("face_swap", "diffusion"),
    "StyleGAN3": ("entire_synthesis", "gan"),
    "FSLSD": ("face_swap", "gan"),
}
MIXES: dict[str, list[str]] = {
    "real+3gen": ["DDPM", "FaceSwapper", "DiffAE"],
    "real+8gen": list(GENERATORS),
}


def make_batch(model: Any, batch: int, mix: str, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Images, labels (half real) and prompt tokens for a label mix."""
    gen = torch.Generator().manual_seed(seed)
    size = model.config.preprocess.image_size
    x = torch.rand(batch, 3, size, size, generator=gen)
    n_real = batch // 2
    fakes = [MIXES[mix][i % len(MIXES[mix])] for i in range(batch - n_real)]
    gens: list[str | None] = [None] * n_real + list(fakes)
    labels = torch.tensor([0] * n_real + [1] * len(fakes))
    tokens = None
    if model.text is not None:
        tokens = model.build_prompts(
            ["real" if g is None else "fake" for g in gens],
            [None if g is None else GENERATORS[g][0] for g in gens],
            [None if g is None else GENERATORS[g][1] for g in gens],
            gens,
        )
    return x, labels, tokens


def distinct_prompts(tokens: torch.Tensor) -> int:
    return int(torch.unique(tokens.reshape(-1, tokens.shape[-1]), dim=0).shape[0])


def make_step(model: Any) -> tuple[Callable[[tuple], None], dict[str, list[float]]]:
    """One optimiser step on a given batch; the dict accumulates per-phase seconds."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4, weight_decay=1e-3)
    phases: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer": []}

    def step(batch: tuple) -> None:
        x, labels, tokens = batch
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(x, tokens)
        loss = model.loss(out, labels).total
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        phases["forward"].append(t1 - t0)
        phases["backward"].append(t2 - t1)
        phases["optimizer"].append(t3 - t2)

    return step, phases


def fle_cost(model: Any, tokens: torch.Tensor, repeats: int, dedup: bool) -> dict[str, Any]:
    """Forward + backward of the FLE alone on ``tokens``, with or without de-duplication."""
    from mfclip.model import fle

    def run() -> None:
        model.zero_grad(set_to_none=True)
        model.text(tokens).sum().backward()

    original = fle.encode_unique
    if not dedup:
        fle.encode_unique = lambda encode, rows: encode(rows)  # every row encoded
    try:
        samples = common.measure(run, warmup=1 if dedup else 0, repeats=repeats)
    finally:
        fle.encode_unique = original
        model.zero_grad(set_to_none=True)
    rows = tokens.shape[0] * tokens.shape[1]
    return {
        "dedup": dedup,
        "samples": tokens.shape[0],
        "rows_encoded": distinct_prompts(tokens) if dedup else rows,
        **common.summarize(samples, tokens.shape[0]),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = common.add_common_args(argparse.ArgumentParser(description=__doc__))
    parser.add_argument("--size", choices=common.MODEL_SIZES, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--mix", choices=list(MIXES), default="real+3gen")
    parser.add_argument(
        "--skip-no-dedup", action="store_true", help="skip the FLE run without de-duplication"
    )
    args = parser.parse_args(argv)
    common.setup(args)
    size = args.size or ("tiny" if args.quick else "vit-b16")
    batch = args.batch or (8 if args.quick else 32)
    repeats = args.repeats or 2

    mfclip = common.build_model(size).train()
    baseline = common.build_model(size, ["variant=clip_ft"]).train()
    data = make_batch(mfclip, batch, args.mix)
    small = make_batch(mfclip, 2, args.mix, seed=1)
    step_m, phases_m = make_step(mfclip)
    step_b, phases_b = make_step(baseline)
    # Warm-up at batch 2 (optimiser state, kernels), then interleaved timed steps.
    step_b((small[0], small[1], None))
    step_m(small)
    times = common.interleaved(
        {"clip_ft": lambda: step_b((data[0], data[1], None)), "mfclip": lambda: step_m(data)},
        warmup=0,
        repeats=repeats,
    )
    stats = {name: common.summarize(t, batch) for name, t in times.items()}
    for name, phases in (("mfclip", phases_m), ("clip_ft", phases_b)):
        stats[name]["phases_median_s"] = {
            k: statistics.median(v[1:]) for k, v in phases.items() if len(v) > 1
        }
    ratio = stats["mfclip"]["items_per_s"] / stats["clip_ft"]["items_per_s"]
    ratio_best = stats["mfclip"]["items_per_s_best"] / stats["clip_ft"]["items_per_s_best"]
    baseline = step_b = None  # free the baseline's weights and optimiser state

    # The FLE alone: per label mix with de-duplication; without it on a quarter of the batch
    # (cost is linear in the rows encoded; scaled to the full batch in the table).
    fle_rows = []
    for mix in MIXES:
        tokens = make_batch(mfclip, batch, mix)[2]
        fle_rows.append({"mix": mix, **fle_cost(mfclip, tokens, repeats, dedup=True)})
    if not (args.quick or args.skip_no_dedup):
        part = data[2][: max(1, batch // 4)]
        row = {"mix": args.mix, **fle_cost(mfclip, part, 1, dedup=False)}
        row["scaled_to_batch_s"] = row["median_s"] * batch / part.shape[0]
        fle_rows.append(row)

    common.print_table(
        f"Training step, {size}, batch {batch}, mix {args.mix} "
        f"({distinct_prompts(data[2])} distinct prompts of {batch * data[2].shape[1]}), "
        f"{torch.get_num_threads()} threads (mfclip/clip_ft = {ratio:.3f} median, "
        f"{ratio_best:.3f} best)",
        ["step", "img/s", "img/s best", "s/step", "spread", "fwd s", "bwd s", "opt s"],
        [
            [name, s["items_per_s"], s["items_per_s_best"], s["median_s"], s["spread"]]
            + [s["phases_median_s"].get(k, float("nan")) for k in ("forward", "backward")]
            + [s["phases_median_s"].get("optimizer", float("nan"))]
            for name, s in stats.items()
        ],
    )
    step_s = stats["mfclip"]["median_s"]
    common.print_table(
        "FLE alone (forward + backward), seconds per step",
        ["mix", "dedup", "samples", "rows encoded", "s/step", f"s at batch {batch}", "share"],
        [
            [
                r["mix"],
                r["dedup"],
                r["samples"],
                r["rows_encoded"],
                r["median_s"],
                r.get("scaled_to_batch_s", r["median_s"]),
                r.get("scaled_to_batch_s", r["median_s"]) / step_s,
            ]
            for r in fle_rows
        ],
    )
    result = {
        "quick": args.quick,
        "size": size,
        "batch": batch,
        "mix": args.mix,
        "distinct_prompts": distinct_prompts(data[2]),
        "prompt_rows": batch * data[2].shape[1],
        "stats": stats,
        "fle": fle_rows,
        "target": {
            "name": "mfclip training step images/s >= 0.75x clip_ft step",
            "ratio": ratio,
            "ratio_best": ratio_best,
            "threshold": 0.75,
            "passed": ratio >= 0.75,
        },
    }
    common.write_result(NAME, result, args.out_dir)
    return result


if __name__ == "__main__":
    main()
