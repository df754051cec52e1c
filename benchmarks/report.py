"""Render ``benchmarks/results/*.json`` as markdown tables (for docs/performance.md).

``python -m benchmarks.report`` prints them; ``--update docs/performance.md`` replaces the
text between ``<!-- bench:tables:start -->`` and ``<!-- bench:tables:end -->`` in that file.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import common

START, END = "<!-- bench:tables:start -->", "<!-- bench:tables:end -->"


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:  # NaN
            return "-"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _machine(data: dict[str, Any]) -> str:
    m = data["machine"]
    load = (data.get("load") or {}).get("others_share")
    busy = f", other processes used {100 * load:.0f}% of the CPUs meanwhile" if load else ""
    return (
        f"_{m['cpu_model']}, {m['cpu_count']} CPUs, torch {m['torch']} "
        f"({m['torch_threads']} threads), device {m['device']}, {data['created']}{busy}._"
    )


def summary(results: Path) -> str:
    rows = []
    for name in ("selection", "inference", "training", "pipeline"):
        data = _load(results, name)
        if not data or "target" not in data:
            rows.append([name, "-", "-", "not run" if not data else "no target"])
            continue
        t = data["target"]
        value, need = common.target_cells(t)
        by_size = t.get("passed_by_size")
        if by_size and not t["passed"]:
            status = ", ".join(f"{k} {'pass' if v else 'fail'}" for k, v in by_size.items())
            rows.append([t["name"], value, need, f"**{status}**"])
            continue
        rows.append([t["name"], value, need, "**pass**" if t["passed"] else "**fail**"])
    return table(["target", "measured", "needed", "status"], rows)


def selection(data: dict[str, Any]) -> str:
    out = [f"#### Selection (target 1)\n\n{_machine(data)}\n"]
    out.append(
        table(
            ["stride", "candidates", "images", "same as skimage argmin", "near-ties (<1e-12)"],
            [
                [
                    a["stride"],
                    a["candidates"],
                    a["images"],
                    a["identical_to_argmin"],
                    a["near_ties"],
                ]
                for a in data["agreement"]
            ],
        )
    )
    sk = data["skimage"]
    out.append(
        f"\nskimage reference: {sk['items_per_s']:.0f} images/s "
        f"(best {sk['items_per_s_best']:.0f}), 224x224, 4 candidates.\n"
    )
    out.append(
        table(
            common.SELECTION_THROUGHPUT_HEADERS,
            common.selection_throughput_rows(data["throughput"]),
        )
    )
    kernel = data.get("target", {}).get("kernel", "torch")
    out.append(
        "\nScaling with batch size and candidate count "
        f"(224x224, patch 112, 1 thread, {kernel} kernel):\n"
    )
    out.append(
        table(
            [
                "stride",
                "candidates",
                "batch",
                "ms/image",
                "images/s",
                "skimage images/s",
                "x skimage",
            ],
            common.selection_scaling_rows(data["scaling"]),
        )
    )
    return "\n".join(out)


def by_size(data: dict[str, Any]) -> str:
    return table(
        [
            "input",
            "candidates (patch 112)",
            "ms/image",
            "ms per batch of 32",
            "skimage ms/image",
            "x skimage",
        ],
        [
            [
                f"{b['size']}x{b['size']}",
                b["candidates"],
                b["ms_per_image"],
                b["ms_per_batch32"],
                b["skimage_ms_per_image"],
                b["ratio_vs_skimage"],
            ]
            for b in data["by_input_size"]
        ],
    )


def inference(data: dict[str, Any]) -> str:
    out = [f"#### Inference (target 2)\n\n{_machine(data)}\n"]
    mem = data.get("memory", {})
    rows = common.inference_rows(data["stats"], mem)
    out.append(
        table(
            ["path", "images/s", "best", "s/batch", "spread", "peak +MiB", "peak RSS MiB"],
            rows,
        )
    )
    note = common.torch_selection_memory_note(mem)
    if note:
        out.append(f"\n{note}.")
    med = data["stats"]["mfclip"]["median_s"]
    out.append(f"\nParts of the noise branch at batch {data['batch']} (s per batch, median):\n")
    out.append(
        table(
            ["part", "s/batch", "share of the MFCLIP pass"],
            [[k, v, v / med] for k, v in data["components_s"].items()],
        )
    )
    return "\n".join(out)


def training(data: dict[str, Any]) -> str:
    out = [f"#### Training step (target 3)\n\n{_machine(data)}\n"]
    rows = []
    for name, s in data["stats"].items():
        ph = s.get("phases_median_s", {})
        rows.append(
            [
                name,
                s["items_per_s"],
                s["items_per_s_best"],
                s["median_s"],
                s["spread"],
                ph.get("forward", float("nan")),
                ph.get("backward", float("nan")),
                ph.get("optimizer", float("nan")),
            ]
        )
    out.append(
        f"ViT-B/16 size, batch {data['batch']}, mix {data['mix']} "
        f"({data['distinct_prompts']} distinct prompts among {data['prompt_rows']} rows).\n"
        if data["size"] == "vit-b16"
        else f"{data['size']}, batch {data['batch']}, mix {data['mix']}.\n"
    )
    out.append(
        table(
            [
                "step",
                "images/s",
                "best",
                "s/step",
                "spread",
                "forward s",
                "backward s",
                "optimizer s",
            ],
            rows,
        )
    )
    step = data["stats"]["mfclip"]["median_s"]
    out.append("\nThe FLE alone (forward + backward, seconds per step):\n")
    out.append(
        table(
            [
                "mix",
                "de-duplicated",
                "samples",
                "rows encoded",
                f"s at batch {data['batch']}",
                "share of the MFCLIP step",
            ],
            [
                [
                    r["mix"],
                    r["dedup"],
                    r["samples"],
                    r["rows_encoded"],
                    r.get("scaled_to_batch_s", r["median_s"]),
                    r.get("scaled_to_batch_s", r["median_s"]) / step,
                ]
                for r in data["fle"]
            ],
        )
    )
    return "\n".join(out)


def pipeline(data: dict[str, Any]) -> str:
    f = data["folder"]
    out = [
        f"#### Input pipeline (target 4)\n\n{_machine(data)}\n",
        f"{f['images']} JPEGs of 256-512 px ({f['source'].replace(' (', ', ').rstrip(')')}), "
        f"batch {data['runs'][0]['batch']}.\n",
    ]
    out.append(table(common.PIPELINE_HEADERS, common.pipeline_rows(data["runs"])))
    return "\n".join(out)


def scaling(data: dict[str, Any], sel: dict[str, Any] | None) -> str:
    out = [f"#### Scaling (target 5)\n\n{_machine(data)}"]
    for size, rows in data["tables"].items():
        paths = sorted({r["path"] for r in rows}, reverse=True)
        batches = sorted({r["batch"] for r in rows})
        cell = {(r["path"], r["batch"]): r for r in rows}
        out.append(f"\nImages/s against batch size, {size} (inference mode, eval):\n")
        out.append(
            table(
                ["batch", *[f"{p} images/s" for p in paths], *[f"{p} ms/image" for p in paths]],
                [
                    [b]
                    + [cell[(p, b)]["items_per_s"] if (p, b) in cell else "-" for p in paths]
                    + [cell[(p, b)]["ms_per_image"] if (p, b) in cell else "-" for p in paths]
                    for b in batches
                ],
            )
        )
    if sel:
        out.append("\nSelection time against input size (batch 32, 1 thread):\n")
        out.append(by_size(sel))
    return "\n".join(out)


def render(results: Path) -> str:
    parts = ["### Targets\n", summary(results)]
    sel = _load(results, "selection")
    for name, fn in (
        ("selection", selection),
        ("inference", inference),
        ("training", training),
        ("pipeline", pipeline),
    ):
        data = _load(results, name)
        if data:
            parts += ["", fn(data)]
    data = _load(results, "scaling")
    if data:
        parts += ["", scaling(data, sel)]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--update", type=Path, help="markdown file with the bench markers")
    args = parser.parse_args(argv)
    text = render(args.results)
    if not args.update:
        print(text)
        return
    doc = args.update.read_text()
    if START not in doc or END not in doc:
        raise SystemExit(f"{args.update} has no {START} ... {END} section")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    args.update.write_text(f"{head}{START}\n{text}{END}{tail}")
    print(f"updated {args.update}")


if __name__ == "__main__":
    main()
