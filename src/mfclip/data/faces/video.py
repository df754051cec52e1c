"""Uniform frame sampling from videos with OpenCV (frames returned as RGB)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ...errors import VideoDecodeError
from .. import opencv

__all__ = ["VideoDecodeError", "read_frames", "sample_indices"]


def sample_indices(total: int, count: int) -> list[int]:
    """``count`` frame indices spread uniformly over ``total`` frames (all if fewer)."""
    if total <= 0 or count <= 0:
        return []
    if count >= total:
        return list(range(total))
    return sorted({round(i) for i in np.linspace(0, total - 1, count)})


def _frame_count(path: Path) -> int:
    cv2 = opencv.cv2()

    capture = cv2.VideoCapture(str(path))
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if total > 0:
            return total
        total = 0  # container without a frame count: count by decoding
        while capture.grab():
            total += 1
        return total
    finally:
        capture.release()


def read_frames(path: str | Path, count: int = 32) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame_index, rgb_array)`` for ``count`` uniformly sampled frames.

    Frames are reached by sequential ``grab`` (exact, unlike seeking in many codecs).
    """
    cv2 = opencv.cv2()

    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: file not found")
    total = _frame_count(path)
    if total == 0:
        raise VideoDecodeError(f"{path}: cannot open video or it has no frames")
    wanted = set(sample_indices(total, count))
    capture = cv2.VideoCapture(str(path))
    try:
        index = 0
        last = max(wanted)
        while index <= last and capture.grab():
            if index in wanted:
                ok, frame = capture.retrieve()
                if ok and frame is not None:
                    yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()
