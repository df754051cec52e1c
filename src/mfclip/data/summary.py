"""Plain-text summary of a manifest: counts per split x label x generator."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .records import SPLITS, Record

__all__ = ["format_table", "summarize"]


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned text columns, numbers right-aligned; no dependency needed."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [
        bool(rows) and all(str(row[i]).isdigit() or str(row[i]) == "" for row in rows)
        for i in range(len(header))
    ]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if numeric[i] else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _split_order(split: str) -> tuple[int, str]:
    return (SPLITS.index(split) if split in SPLITS else len(SPLITS), split)


def summarize(records: Sequence[Record]) -> str:
    """Counts of images and groups per (split, label, generator), with split totals."""
    images: Counter[tuple[str, str, str]] = Counter()
    groups: dict[tuple[str, str, str], set[str]] = {}
    for r in records:
        key = (r.split or "-", r.label, r.generator or "-")
        images[key] += 1
        groups.setdefault(key, set()).add(r.group or r.path)
    rows: list[list[object]] = []
    for split in sorted({k[0] for k in images}, key=_split_order):
        keys = sorted(k for k in images if k[0] == split)
        for key in keys:
            rows.append([*key, images[key], len(groups[key])])
        total = sum(images[k] for k in keys)
        n_real = sum(images[k] for k in keys if k[1] == "real")
        rows.append([split, "all", f"(real {n_real}, fake {total - n_real})", total, ""])
    table = format_table(["split", "label", "generator", "images", "groups"], rows)
    return (
        f"{table}\ntotal: {len(records)} images, {len({r.group or r.path for r in records})} groups"
    )
