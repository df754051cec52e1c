"""``diff`` layout: DiFF (ACM MM 2024), real images plus four diffusion subsets.

Both common arrangements are understood, in any nesting order::

    DiFF_real/{train,val,test}/...          {train,val,test}/{T2I,I2I,FS,FE}/METHOD/...
    {T2I,I2I,FS,FE}/METHOD/{train,val,test}/...

The split folders are DiFF's official split and are kept.
"""

from __future__ import annotations

from pathlib import Path

from ..records import Record
from .base import SPLIT_NAMES, ImportResult, group_from_pattern, media_under, split_in

__all__ = ["import_diff"]

SUBSETS = {"t2i": "T2I", "i2i": "I2I", "fs": "FS", "fe": "FE"}
REAL_NAMES = {"diff_real", "real"}


def import_diff(
    root: str | Path, group_pattern: str | None = None, videos: bool = False
) -> ImportResult:
    """Index a DiFF tree; a folder below the method (identity) becomes the group."""
    root = Path(root)
    result = ImportResult()
    stray = 0
    for file in media_under(root, videos, result):
        rel = file.relative_to(root)
        dirs = rel.parts[:-1]
        lowered = [d.lower() for d in dirs]
        structural = {i for i, d in enumerate(lowered) if d in SPLIT_NAMES}
        real_at = next((i for i, d in enumerate(lowered) if d in REAL_NAMES), None)
        subset_at = next((i for i, d in enumerate(lowered) if d in SUBSETS), None)
        if real_at is not None:
            label, subset, method = "real", "", "DiFF_real"
            structural |= set(range(real_at + 1))
        elif subset_at is not None:
            label, subset = "fake", SUBSETS[lowered[subset_at]]
            structural |= set(range(subset_at + 1))
            method_at = next(
                (i for i in range(subset_at + 1, len(dirs)) if i not in structural), None
            )
            method = dirs[method_at] if method_at is not None else ""
            if method_at is not None:
                structural.add(method_at)
        else:
            stray += 1
            continue
        rest = [d for i, d in enumerate(dirs) if i not in structural]
        group = group_from_pattern(group_pattern, rel.as_posix())
        if group is None:
            group = Path(*dirs).as_posix() if rest else rel.with_suffix("").as_posix()
        result.records.append(
            Record(
                path=str(file),
                label=label,
                forgery_type=subset,
                family="diffusion" if label == "fake" else "",
                generator=method,
                split=split_in(dirs),
                group=group,
            )
        )
    if stray:
        result.warnings.append(
            f"{stray} file(s) are neither under DiFF_real/ nor under T2I/I2I/FS/FE and were skipped"
        )
    missing_method = sum(1 for r in result.records if r.is_fake and not r.generator)
    if missing_method:
        result.warnings.append(
            f"{missing_method} fake file(s) sit directly in a subset folder (no method)"
        )
    result.official_splits = any(r.split for r in result.records)
    return result
