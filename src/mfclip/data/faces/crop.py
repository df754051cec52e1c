"""Square face crops with a margin (DeepfakeBench: 1.3x the detected box)."""

from __future__ import annotations

import numpy as np

from .detector import FaceBox

__all__ = ["crop_face", "square_region"]


def square_region(box: FaceBox, margin: float, width: int, height: int) -> tuple[int, int, int]:
    """``(x0, y0, side)`` of the square around ``box`` enlarged ``margin`` times.

    The square is kept inside the image by shifting it when it fits; only when it is larger
    than the image does it extend outside (the crop then pads).
    """
    side = max(1, round(max(box.w, box.h) * margin))
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    if side <= width:
        x0 = min(max(x0, 0), width - side)
    if side <= height:
        y0 = min(max(y0, 0), height - side)
    return x0, y0, side


def crop_face(image: np.ndarray, box: FaceBox, margin: float = 1.3, size: int = 256) -> np.ndarray:
    """Crop the square face region of an (H, W, 3) array and resize it to ``size``."""
    import cv2

    height, width = image.shape[:2]
    x0, y0, side = square_region(box, margin, width, height)
    x1, y1 = x0 + side, y0 + side
    pad = (max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width))
    crop = image[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    if any(pad):
        crop = cv2.copyMakeBorder(crop, *pad, borderType=cv2.BORDER_CONSTANT, value=(0, 0, 0))
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interpolation)
