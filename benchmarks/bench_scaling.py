"""Target 5 (throughput half): inference images/s against batch size.

MFCLIP inference (``model(pixel_values)`` in eval, ``torch.inference_mode``) at batch sizes
1..64 for the tiny model (and the bare vision tower beside it) and 1..32 for the ViT-B/16-size
model. Selection time against input size is in ``bench_selection`` (``by_input_size``).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from benchmarks import common

NAME = "scaling"


def sweep(
    model: Any, batches: list[int], which: str, budget_images: int, max_repeats: int
) -> list[dict[str, Any]]:
    """images/s per batch size; repeats shrink for big batches (about ``budget_images``)."""
    size = model.config.preprocess.image_size
    enc = model.visual.global_encoder
    fn = (lambda x: enc(x)) if which == "bare" else (lambda x: model(x))
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        fn(torch.rand(2, 3, size, size, generator=gen))  # global warm-up
        rows = []
        for batch in batches:
            x = torch.rand(batch, 3, size, size, generator=gen)
            repeats = max(1, min(max_repeats, budget_images // batch))
            warmup = 1 if batch * 4 <= budget_images else 0
            s = common.summarize(common.measure(lambda x=x: fn(x), warmup, repeats), batch)
            rows.append(
                {
                    "path": which,
                    "batch": batch,
                    "items_per_s": s["items_per_s"],
                    "items_per_s_best": s["items_per_s_best"],
                    "ms_per_image": 1e3 / s["items_per_s"],
                    "median_s": s["median_s"],
                    "spread": s["spread"],
                    "repeats": s["repeats"],
                }
            )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = common.add_common_args(argparse.ArgumentParser(description=__doc__))
    parser.add_argument("--skip-vit", action="store_true", help="tiny model only")
    parser.add_argument("--vit-max-batch", type=int, default=32)
    args = parser.parse_args(argv)
    common.setup(args)
    tiny_batches = [1, 2, 4, 8, 16] if args.quick else [1, 2, 4, 8, 16, 32, 64]
    tables: dict[str, list[dict[str, Any]]] = {}

    tiny = common.build_model("tiny").eval()
    tables["tiny"] = sweep(tiny, tiny_batches, "mfclip", 32 if args.quick else 256, 5)
    tables["tiny"] += sweep(tiny, tiny_batches, "bare", 32 if args.quick else 256, 5)
    if not (args.quick or args.skip_vit):
        vit = common.build_model("vit-b16").eval()
        batches = [b for b in (1, 2, 4, 8, 16, 32, 64) if b <= args.vit_max_batch]
        tables["vit-b16"] = sweep(vit, batches, "mfclip", 16, 3)

    for size, rows in tables.items():
        common.print_table(
            f"Inference images/s vs batch size, {size}, {torch.get_num_threads()} threads",
            ["path", "batch", "img/s", "img/s best", "ms/img", "repeats", "spread"],
            [
                [
                    r["path"],
                    r["batch"],
                    r["items_per_s"],
                    r["items_per_s_best"],
                    r["ms_per_image"],
                    r["repeats"],
                    r["spread"],
                ]
                for r in rows
            ],
        )
    result = {"quick": args.quick, "tables": tables}
    common.write_result(NAME, result, args.out_dir)
    return result


if __name__ == "__main__":
    main()
