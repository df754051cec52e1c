"""What every importer returns, and helpers they share."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..media import walk_media
from ..records import Record, normalize_split

__all__ = ["ImportResult", "find_dir", "split_in", "warn_empty"]

SPLIT_NAMES = {"train", "training", "val", "valid", "validation", "dev", "test", "testing"}


@dataclass
class ImportResult:
    """Records found under a root plus everything the user should hear about."""

    records: list[Record] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Whether the layout carried official splits (then they are kept as they are).
    official_splits: bool = False


def split_in(parts: tuple[str, ...] | list[str]) -> str:
    """The split named by a path component (``train``/``val``/``test``), else ``""``."""
    for part in parts:
        if part.lower() in SPLIT_NAMES:
            return normalize_split(part)
    return ""


def find_dir(parent: Path, names: set[str]) -> Path | None:
    """A child directory of ``parent`` whose lower-cased name is in ``names``."""
    if not parent.is_dir():
        return None
    for child in sorted(parent.iterdir()):
        if child.is_dir() and child.name.lower() in names:
            return child
    return None


def warn_empty(result: ImportResult, empty_dirs: list[Path], root: Path) -> None:
    """Add one warning per empty folder (the top few named, the rest counted)."""
    limit = 20
    for directory in empty_dirs[:limit]:
        rel = directory.relative_to(root) if directory != root else Path(".")
        result.warnings.append(f"empty folder (no images): {rel.as_posix()}/")
    if len(empty_dirs) > limit:
        result.warnings.append(f"... and {len(empty_dirs) - limit} more empty folders")


def group_from_pattern(pattern: str | None, rel: str) -> str | None:
    """Group id from a regex over the root-relative path (first capture group, else the match)."""
    if not pattern:
        return None
    match = re.search(pattern, rel)
    if not match:
        return None
    return match.group(1) if match.groups() else match.group(0)


def media_under(root: Path, videos: bool, result: ImportResult) -> list[Path]:
    """All media under ``root``, warning about empty folders along the way."""
    empty: list[Path] = []
    files = list(walk_media(root, videos=videos, empty_dirs=empty))
    warn_empty(result, empty, root)
    return files
