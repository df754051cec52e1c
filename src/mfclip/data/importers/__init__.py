"""Importers: turn a dataset's on-disk layout into manifest records.

``index_dataset`` runs one importer, then gives every row without an official split a
deterministic split by group, and warns when a group straddles splits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..splits import DEFAULT_RATIOS, assign_splits, group_leaks
from .base import ImportResult
from .deepfakebench import import_deepfakebench
from .diff import import_diff
from .folders import import_folders
from .genface import import_genface

__all__ = [
    "IMPORTERS",
    "ImportResult",
    "import_deepfakebench",
    "import_diff",
    "import_folders",
    "import_genface",
    "index_dataset",
]

IMPORTERS: dict[str, Callable[..., ImportResult]] = {
    "folders": import_folders,
    "genface": import_genface,
    "diff": import_diff,
    "deepfakebench": import_deepfakebench,
}


def index_dataset(
    root: str | Path,
    layout: str = "folders",
    ratios: Sequence[float] = DEFAULT_RATIOS,
    salt: str = "",
    **options: Any,
) -> ImportResult:
    """Run the ``layout`` importer on ``root`` and complete the splits."""
    if layout not in IMPORTERS:
        raise ValueError(f"unknown layout '{layout}' (choose from {', '.join(IMPORTERS)})")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset root is not a directory: {root}")
    result = IMPORTERS[layout](root, **options)
    if not result.records:
        result.warnings.append(f"no images found under {root} with layout '{layout}'")
    result.records = assign_splits(result.records, ratios, salt)
    leaks = group_leaks(result.records)
    if leaks:
        example = next(iter(leaks))
        result.warnings.append(
            f"{len(leaks)} group(s) appear in more than one split, e.g. '{example}' in "
            f"{', '.join(leaks[example])}: the layout's official split leaks videos/identities"
        )
    return result
