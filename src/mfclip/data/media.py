"""Which files are media, and a deterministic walk over a dataset tree."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "is_image", "is_video", "walk_media"]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".jfif"}
)
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def walk_media(
    root: Path, videos: bool = False, empty_dirs: list[Path] | None = None
) -> Iterator[Path]:
    """Media files under ``root`` in sorted order (hidden entries skipped).

    Directories that contain no media at any depth are appended to ``empty_dirs`` so importers
    can warn about them instead of silently producing a smaller dataset.
    """

    def visit(directory: Path) -> Iterator[Path]:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            if empty_dirs is not None:
                empty_dirs.append(directory)
            return
        found = False
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=True):
                for item in visit(Path(entry.path)):
                    found = True
                    yield item
            elif is_image(entry.name) or (videos and is_video(entry.name)):
                found = True
                yield Path(entry.path)
        if not found and empty_dirs is not None:
            empty_dirs.append(directory)

    yield from visit(root)
