"""Preprocessing that matches the backbone, and the training pipeline built on it.

The evaluation transform is defined entirely by :class:`mfclip.config.PreprocessConfig`, which
travels with the saved model, so inference preprocesses exactly as training did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ..config import PreprocessConfig
from . import functional as F
from .augment import (
    ColorJitter,
    GaussianBlur,
    HorizontalFlip,
    JpegCompression,
    RandomOp,
    RandomResizedCrop,
)

__all__ = [
    "AugmentConfig",
    "EvalTransform",
    "TrainTransform",
    "build_eval_transform",
    "build_train_transform",
    "normalize",
    "pixels_to_tensor",
    "to_tensor",
]


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB image -> float32 tensor (3, H, W) in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def normalize(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel ``(x - mean) / std``."""
    m = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    return (tensor - m) / s


def pixels_to_tensor(
    pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> float32 ``(N, 3, H, W)`` normalised, on ``pixels``' device.

    The same float32 operations as :func:`to_tensor` + :func:`normalize`, so the result is
    identical bit for bit; done once per batch, it lets decoding workers hand over uint8 crops
    (a quarter of the bytes) and lets a GPU do the arithmetic.
    """
    x = pixels.permute(0, 3, 1, 2).to(torch.float32) / 255.0
    return normalize(x, mean, std)


@dataclass
class EvalTransform:
    """Resize shortest edge, centre crop, to tensor, normalise (CLIP's preprocessing).

    Split in two for pipelines that batch: :meth:`pixels` (geometry, uint8, in a worker) and
    :meth:`to_batch` (arithmetic, once per batch); ``__call__`` does both for one image.
    """

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    uses_rng = False

    def pixels(self, image: Image.Image) -> np.ndarray:
        """The model's input crop as uint8 ``(S, S, 3)``."""
        pre = self.preprocess
        image = F.resize_shortest(image, pre.resize, pre.interpolation)
        return np.asarray(F.center_crop(image, pre.image_size).convert("RGB"))

    def to_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, S, S, 3)`` crops from :meth:`pixels` -> the normalised model input."""
        return pixels_to_tensor(pixels, self.preprocess.mean, self.preprocess.std)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.to_batch(torch.from_numpy(self.pixels(image).copy())[None])[0]


def build_eval_transform(preprocess: PreprocessConfig | None = None) -> EvalTransform:
    return EvalTransform(preprocess or PreprocessConfig())


@dataclass
class AugmentConfig:
    """Training augmentations; a probability of 0 switches an operation off."""

    flip_p: float = 0.5
    crop_p: float = 1.0
    crop_scale: tuple[float, float] = (0.6, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jpeg_p: float = 0.3
    jpeg_quality: tuple[int, int] = (60, 100)
    blur_p: float = 0.1
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    color_p: float = 0.3
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.0


@dataclass
class TrainTransform:
    """Degradations on the full image, then crop/flip/colour, then :class:`EvalTransform` tail.

    Randomness comes only from the ``rng`` argument, which the dataset derives from
    ``(seed, epoch, index)``: reproducible, and different in every DataLoader worker.
    """

    preprocess: PreprocessConfig
    ops: list[RandomOp]
    uses_rng = True

    def __call__(self, image: Image.Image, rng: np.random.Generator | None = None) -> torch.Tensor:
        rng = rng if rng is not None else np.random.default_rng()
        for op in self.ops:
            image = op(image, rng)
        pre = self.preprocess
        if image.size != (pre.image_size, pre.image_size):
            image = F.center_crop(
                F.resize_shortest(image, pre.resize, pre.interpolation), pre.image_size
            )
        return normalize(to_tensor(image), pre.mean, pre.std)


def build_train_transform(
    preprocess: PreprocessConfig | None = None, augment: AugmentConfig | None = None
) -> TrainTransform:
    """The default training pipeline for a backbone's preprocessing."""
    pre = preprocess or PreprocessConfig()
    aug = augment or AugmentConfig()
    ops: list[RandomOp] = [
        GaussianBlur(aug.blur_p, aug.blur_sigma),
        JpegCompression(aug.jpeg_p, aug.jpeg_quality),
        RandomResizedCrop(
            pre.image_size, aug.crop_p, aug.crop_scale, aug.crop_ratio, pre.interpolation
        ),
        HorizontalFlip(aug.flip_p),
        ColorJitter(aug.color_p, aug.brightness, aug.contrast, aug.saturation, aug.hue),
    ]
    return TrainTransform(pre, [op for op in ops if op.p > 0])
