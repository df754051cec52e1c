"""The one face crop: square region around the largest face, enlarged, resized to a fixed size.

``mfclip data faces`` writes these crops for training and evaluation, and ``detect --faces`` /
``serve --faces`` score the very same crop of the original file, so a face gets the same score
whichever way it reaches the model. The :class:`~mfclip.preprocess.geometry.Placement` maps
crop pixels back to the source image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...preprocess.geometry import Placement
from .. import opencv
from .detector import FaceBox

__all__ = ["FaceCrop", "crop_face", "largest_face", "square_region"]

#: DeepfakeBench's crop: the detected box enlarged 1.3 times, saved at 256 px.
DEFAULT_MARGIN = 1.3
DEFAULT_SIZE = 256


@dataclass
class FaceCrop:
    """A face crop, where it came from, and the detected box in source pixels."""

    pixels: np.ndarray  # uint8 (size, size, 3)
    placement: Placement
    box: list[int]


def largest_face(boxes: Sequence[FaceBox]) -> FaceBox | None:
    """The face to score: largest area, then highest score (the first of exact ties)."""
    return max(boxes, key=lambda b: (b.area, b.score)) if boxes else None


def square_region(box: FaceBox, margin: float, width: int, height: int) -> tuple[int, int, int]:
    """``(x0, y0, side)`` of the square around ``box`` enlarged ``margin`` times.

    The square is kept inside the image by shifting it when it fits; only when it is larger
    than the image does it extend outside (the crop then pads with black).
    """
    side = max(1, round(max(box.w, box.h) * margin))
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    if side <= width:
        x0 = min(max(x0, 0), width - side)
    if side <= height:
        y0 = min(max(y0, 0), height - side)
    return x0, y0, side


def crop_face(
    image: np.ndarray, box: FaceBox, margin: float = DEFAULT_MARGIN, size: int = DEFAULT_SIZE
) -> FaceCrop:
    """Crop the square face region of an RGB ``(H, W, 3)`` uint8 array, resized to ``size``.

    Area interpolation when shrinking, bicubic when enlarging (OpenCV).
    """
    cv2 = opencv.cv2()
    if margin < 1.0 or size < 8:
        raise ValueError(f"faces: need margin >= 1 and size >= 8, got {margin} and {size}")
    height, width = image.shape[:2]
    x0, y0, side = square_region(box, margin, width, height)
    x1, y1 = x0 + side, y0 + side
    pad = (max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width))
    crop = image[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    if any(pad):
        crop = cv2.copyMakeBorder(crop, *pad, borderType=cv2.BORDER_CONSTANT, value=(0, 0, 0))
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    pixels = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interpolation)
    face_box = [round(box.x), round(box.y), round(box.x + box.w), round(box.y + box.h)]
    return FaceCrop(pixels, Placement((float(x0), float(y0)), size / side), face_box)
