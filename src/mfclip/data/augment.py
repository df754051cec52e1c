"""Named random training operations: ``op(image, rng) -> image``, probability ``p`` each."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from . import functional as F

__all__ = [
    "ColorJitter",
    "GaussianBlur",
    "HorizontalFlip",
    "JpegCompression",
    "PatchShuffle",
    "RandomOp",
    "RandomRescale",
    "RandomResizedCrop",
]


class RandomOp(Protocol):
    name: str
    p: float

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image: ...


@dataclass
class HorizontalFlip:
    p: float = 0.5
    name = "flip"

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < self.p else image


@dataclass
class RandomResizedCrop:
    """Random area/aspect crop resized to ``size``; falls back to a centre crop (as torchvision)."""

    size: int
    p: float = 1.0
    scale: tuple[float, float] = (0.6, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bicubic"
    name = "random_resized_crop"

    def _box(self, width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
                return x, y, w, h
        side = min(width, height)
        return (width - side) // 2, (height - side) // 2, side, side

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        if rng.random() >= self.p:
            return image
        x, y, w, h = self._box(*image.size, rng)
        resample = F.INTERPOLATIONS[self.interpolation]
        return image.resize((self.size, self.size), resample, box=(x, y, x + w, y + h))


@dataclass
class RandomRescale:
    """Resize the whole image by a random factor with a random filter (resize jitter).

    Generators leave resampling traces at one scale; images on the web have been resized by
    any factor with any filter. Jittering both keeps a detector from keying on one of them.
    """

    p: float = 0.0
    factor: tuple[float, float] = (0.5, 1.5)
    name = "rescale"

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        if rng.random() >= self.p:
            return image
        f = rng.uniform(*self.factor)
        size = (max(1, round(image.width * f)), max(1, round(image.height * f)))
        filters = ("bilinear", "bicubic", "lanczos")
        return image.resize(size, F.INTERPOLATIONS[filters[int(rng.integers(len(filters)))]])


@dataclass
class JpegCompression:
    p: float = 0.3
    quality: tuple[int, int] = (60, 100)
    name = "jpeg"

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        if rng.random() >= self.p:
            return image
        return F.jpeg(image, int(rng.integers(self.quality[0], self.quality[1] + 1)))


@dataclass
class GaussianBlur:
    p: float = 0.1
    sigma: tuple[float, float] = (0.1, 2.0)
    name = "blur"

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return F.gaussian_blur(image, rng.uniform(*self.sigma)) if rng.random() < self.p else image


@dataclass
class ColorJitter:
    """Brightness/contrast/saturation factors in ``1 ± x`` and hue shift in ``± hue`` turns."""

    p: float = 0.3
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.0
    name = "color_jitter"

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        if rng.random() >= self.p:
            return image
        return F.adjust_color(
            image,
            brightness=rng.uniform(1 - self.brightness, 1 + self.brightness),
            contrast=rng.uniform(1 - self.contrast, 1 + self.contrast),
            saturation=rng.uniform(1 - self.saturation, 1 + self.saturation),
            hue=rng.uniform(-self.hue, self.hue) if self.hue else 0.0,
        )


@dataclass
class PatchShuffle:
    """Cut the image into a ``grid x grid`` mosaic and shuffle the tiles.

    Local artefacts survive and the global layout does not, so a detector cannot lean on
    face semantics: patch-level classifiers generalise better across generators (Chai et al.,
    "What makes fake images detectable?", ECCV 2020).
    """

    p: float = 0.0
    grid: int = 2
    name = "patch_shuffle"

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        if rng.random() >= self.p or self.grid < 2:
            return image
        w, h = image.width // self.grid, image.height // self.grid
        if w == 0 or h == 0:
            return image
        boxes = [
            (x * w, y * h, (x + 1) * w, (y + 1) * h)
            for y in range(self.grid)
            for x in range(self.grid)
        ]
        tiles = [image.crop(box) for box in boxes]
        out = image.copy()
        for box, k in zip(boxes, rng.permutation(len(tiles)), strict=True):
            out.paste(tiles[int(k)], box[:2])
        return out
