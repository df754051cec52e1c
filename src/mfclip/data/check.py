"""``data check``: read every file of a manifest and report all problems at once."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..preprocess.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, load_image
from .manifest import resolve_path
from .media import is_video
from .records import Record
from .splits import group_leaks

__all__ = ["Problem", "check_records"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one manifest row (or with the manifest as a whole)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _check_one(path: str, max_pixels: int | None) -> str | None:
    if is_video(path):
        return "is a video: extract face frames first with `mfclip data faces`"
    try:
        load_image(path, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        return exc.reason
    except Exception as exc:  # a checker reports, it does not crash
        return f"unexpected error: {type(exc).__name__}: {exc}"
    return None


def check_records(
    records: Sequence[Record],
    root: str | Path,
    workers: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: bool = True,
) -> list[Problem]:
    """Decode every usable row's file; also flag duplicates and groups spanning splits."""
    from .parallel import parallel_map

    problems: list[Problem] = []
    usable = [r for r in records if r.status == "ok"]
    paths = [str(resolve_path(r.path, root)) for r in usable]
    check = partial(_check_one, max_pixels=max_pixels)
    for path, reason in zip(
        paths,
        parallel_map(check, paths, workers, desc="checking", progress=progress, chunksize=16),
        strict=True,
    ):
        if reason is not None:
            problems.append(Problem(os.path.normpath(path), reason))
    for path, count in Counter(paths).items():
        if count > 1:
            problems.append(Problem(path, f"listed {count} times in the manifest"))
    for group, splits in group_leaks(records).items():
        problems.append(
            Problem(f"group {group}", f"appears in several splits: {', '.join(splits)}")
        )
    return problems
