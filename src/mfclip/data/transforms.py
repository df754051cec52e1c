"""The training pipeline and the evaluation transform, both ending in the one model geometry.

Both hand the model a uint8 ``(3, S, S)`` crop made by :func:`mfclip.preprocess.geometry.fit`;
the model scales to [0, 1] and normalises inside, so its noise branch sees the decoded pixels
exactly. :class:`mfclip.config.PreprocessConfig` travels with the saved model, so inference
preprocesses exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ..config import PreprocessConfig
from ..preprocess.geometry import Placement, fit
from .augment import (
    ColorJitter,
    GaussianBlur,
    HorizontalFlip,
    JpegCompression,
    PatchShuffle,
    RandomOp,
    RandomRescale,
    RandomResizedCrop,
)

__all__ = [
    "AugmentConfig",
    "EvalTransform",
    "TrainTransform",
    "build_eval_transform",
    "build_train_transform",
    "to_chw",
]


def to_chw(pixels: np.ndarray) -> torch.Tensor:
    """uint8 ``(..., H, W, 3)`` array -> uint8 tensor ``(..., 3, H, W)`` (channels first)."""
    tensor = torch.from_numpy(np.ascontiguousarray(pixels))
    return tensor.movedim(-1, -3).contiguous()


@dataclass
class EvalTransform:
    """Resize shortest edge, centre crop (CLIP's geometry) -> uint8 ``(3, S, S)``.

    :meth:`fit` also returns the :class:`Placement` that maps model pixels back to the image.
    """

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    uses_rng = False

    def fit(self, image: Image.Image) -> tuple[np.ndarray, Placement]:
        """The model's uint8 ``(S, S, 3)`` input crop and where it sits in ``image``."""
        return fit(image, self.preprocess)

    def pixels(self, image: Image.Image) -> np.ndarray:
        """The model's input crop as uint8 ``(S, S, 3)``."""
        return fit(image, self.preprocess)[0]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return to_chw(self.pixels(image))


def build_eval_transform(preprocess: PreprocessConfig | None = None) -> EvalTransform:
    return EvalTransform(preprocess or PreprocessConfig())


@dataclass
class AugmentConfig:
    """Training augmentations; a probability of 0 switches an operation off.

    Order: rescale, blur, JPEG (degradations of the full image), then crop, flip, colour and
    the patch shuffle.
    """

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
    #: Resize jitter: rescale the whole image by a factor in ``rescale_range``.
    rescale_p: float = 0.0
    rescale_range: tuple[float, float] = (0.5, 1.5)
    #: Shuffle a ``patch_shuffle_grid`` x ``patch_shuffle_grid`` mosaic of the image.
    patch_shuffle_p: float = 0.0
    patch_shuffle_grid: int = 2


@dataclass
class TrainTransform:
    """Degradations on the full image, then crop/flip/colour, then the model geometry (uint8).

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
        return to_chw(fit(image, self.preprocess)[0])


def build_train_transform(
    preprocess: PreprocessConfig | None = None, augment: AugmentConfig | None = None
) -> TrainTransform:
    """The default training pipeline for a backbone's preprocessing."""
    pre = preprocess or PreprocessConfig()
    aug = augment or AugmentConfig()
    ops: list[RandomOp] = [
        RandomRescale(aug.rescale_p, aug.rescale_range),
        GaussianBlur(aug.blur_p, aug.blur_sigma),
        JpegCompression(aug.jpeg_p, aug.jpeg_quality),
        RandomResizedCrop(
            pre.image_size, aug.crop_p, aug.crop_scale, aug.crop_ratio, pre.interpolation
        ),
        HorizontalFlip(aug.flip_p),
        ColorJitter(aug.color_p, aug.brightness, aug.contrast, aug.saturation, aug.hue),
        PatchShuffle(aug.patch_shuffle_p, aug.patch_shuffle_grid),
    ]
    return TrainTransform(pre, [op for op in ops if op.p > 0])
