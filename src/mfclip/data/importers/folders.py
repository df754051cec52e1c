"""``folders`` layout: any tree with ``real``/``fake`` (or ``0_real``/``1_fake``) folders.

Rules (documented in docs/data.md):

- the first path component named like a label decides the label;
- a ``train``/``val``/``test`` component above it gives the split;
- ``generator_depth`` folder levels below the label folder name the generator (default 1);
  without one, the nearest non-split folder above the label folder is used;
- a file deeper than that sits in a video/identity folder, which becomes its group;
  otherwise the file is its own group (``group_pattern`` overrides both).
"""

from __future__ import annotations

from pathlib import Path

from ..generators import describe_generator
from ..records import Record
from .base import SPLIT_NAMES, ImportResult, group_from_pattern, media_under, split_in

__all__ = ["FAKE_DIRS", "REAL_DIRS", "import_folders"]

REAL_DIRS = {"real", "0_real", "reals", "pristine", "original", "genuine", "bonafide"}
FAKE_DIRS = {"fake", "1_fake", "fakes", "forged", "synthetic", "manipulated", "generated"}


def import_folders(
    root: str | Path,
    videos: bool = False,
    group_pattern: str | None = None,
    generator_depth: int = 1,
    forgery_type: str | None = None,
    family: str | None = None,
    generator: str | None = None,
) -> ImportResult:
    """Index a real/fake folder tree; ``forgery_type``/``family``/``generator`` override."""
    root = Path(root)
    result = ImportResult()
    outside = 0
    for file in media_under(root, videos, result):
        rel = file.relative_to(root)
        dirs = rel.parts[:-1]
        position = next((i for i, d in enumerate(dirs) if d.lower() in REAL_DIRS | FAKE_DIRS), None)
        if position is None:
            outside += 1
            continue
        label = "real" if dirs[position].lower() in REAL_DIRS else "fake"
        above, below = dirs[:position], dirs[position + 1 :]
        gen = generator
        if gen is None:
            if generator_depth > 0 and len(below) >= generator_depth:
                gen = "/".join(below[:generator_depth])
            else:
                gen = next((d for d in reversed(above) if d.lower() not in SPLIT_NAMES), "")
        deeper = len(below) > (generator_depth if generator is None else 0)
        group = group_from_pattern(group_pattern, rel.as_posix())
        if group is None:
            group = Path(*dirs).as_posix() if deeper else rel.with_suffix("").as_posix()
        known_type, known_family = describe_generator(gen) if label == "fake" else ("", "")
        result.records.append(
            Record(
                path=str(file),
                label=label,
                forgery_type=(forgery_type or known_type) if label == "fake" else "",
                family=(family or known_family) if label == "fake" else "",
                generator=gen,
                split=split_in(above),
                group=group,
            )
        )
    if outside:
        result.warnings.append(
            f"{outside} file(s) are not under a real/fake (0_real/1_fake) folder and were skipped"
        )
    result.official_splits = any(r.split for r in result.records)
    return result
