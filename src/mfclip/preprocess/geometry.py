"""Resize/crop geometry of the model input, and the map from model pixels back to the source.

The one implementation of "decoded image -> model-size uint8 crop": training (after its
augmentations), evaluation, detection, the service and the torch-free ONNX runtime all call
:func:`fit`, so the same file gives the same pixels every way it is scored. A
:class:`Placement` remembers how the crop sits in the source image, so the richest-patch box
(and any other box in model pixels) is reported in the pixels of the original file. Needs
numpy and Pillow only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

__all__ = [
    "INTERPOLATIONS",
    "InputGeometry",
    "Placement",
    "center_crop",
    "fit",
    "resample_filter",
    "resize_shortest",
]

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


class InputGeometry(Protocol):
    """What :func:`fit` needs of a preprocessing config (``PreprocessConfig`` or ONNX metadata)."""

    image_size: int
    resize: int
    interpolation: str


def resample_filter(name: str) -> Image.Resampling:
    """PIL's filter for an interpolation name; unknown names list the known ones."""
    try:
        return INTERPOLATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown interpolation '{name}' (use {', '.join(INTERPOLATIONS)})"
        ) from None


def resize_shortest(image: Image.Image, size: int, interpolation: str = "bicubic") -> Image.Image:
    """Shortest edge to ``size``, aspect kept (CLIPImageProcessor's rule: long = int(size*l/s))."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_long = int(size * long / short)
    new = (size, new_long) if width <= height else (new_long, size)
    return image if new == image.size else image.resize(new, resample_filter(interpolation))


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """Central ``size`` x ``size`` square; pads with black when the image is smaller."""
    width, height = image.size
    if width < size or height < size:
        canvas = Image.new("RGB", (max(width, size), max(height, size)))
        canvas.paste(image, ((canvas.width - width) // 2, (canvas.height - height) // 2))
        image, width, height = canvas, canvas.width, canvas.height
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


@dataclass(frozen=True)
class Placement:
    """Where model pixels come from: ``source = origin + model / scale`` on each axis.

    ``scale`` is model pixels per source pixel. The identity placement (origin 0, scale 1)
    describes an image that was already at model size.
    """

    origin: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0

    def within(self, outer: Placement) -> Placement:
        """This placement (relative to a region) expressed in ``outer``'s source pixels.

        For a face crop at ``outer`` that was then fitted to the model with ``self``.
        """
        ox, oy = outer.origin
        return Placement(
            (ox + self.origin[0] / outer.scale, oy + self.origin[1] / outer.scale),
            self.scale * outer.scale,
        )

    def to_source(self, box: tuple[float, float, float, float] | list[float]) -> list[int]:
        """``(x0, y0, x1, y1)`` in model pixels -> rounded source pixels."""
        x0, y0, x1, y1 = (float(v) for v in box)
        ox, oy = self.origin
        s = self.scale
        return [round(ox + x0 / s), round(oy + y0 / s), round(ox + x1 / s), round(oy + y1 / s)]


def fit(image: Image.Image, geometry: InputGeometry) -> tuple[np.ndarray, Placement]:
    """RGB image -> the model's uint8 input crop ``(S, S, 3)`` and its :class:`Placement`.

    Shortest edge resized to ``geometry.resize`` (CLIP's rule), then the central
    ``image_size`` square; an image already at model size passes through untouched.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    if width < 1 or height < 1:
        raise ValueError(f"image has no pixels ({width}x{height})")
    resized = resize_shortest(image, geometry.resize, geometry.interpolation)
    crop_x = (resized.width - geometry.image_size) // 2
    crop_y = (resized.height - geometry.image_size) // 2
    pixels = np.array(center_crop(resized, geometry.image_size))  # writable: torch takes it
    scale = geometry.resize / min(width, height)
    return pixels, Placement((crop_x / scale, crop_y / scale), scale)
