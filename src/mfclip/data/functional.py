"""Deterministic image operations shared by training augmentations and eval perturbations.

All take and return RGB ``PIL.Image`` objects and use PIL/numpy only, so they run in
DataLoader workers without OpenCV or torchvision.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from ..preprocess.geometry import INTERPOLATIONS, center_crop, resample_filter, resize_shortest

__all__ = [
    "INTERPOLATIONS",
    "adjust_color",
    "center_crop",
    "down_up",
    "gaussian_blur",
    "gaussian_noise",
    "jpeg",
    "resize_shortest",
]


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """Re-encode as JPEG at ``quality`` (1-100) and decode again."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def gaussian_blur(image: Image.Image, sigma: float) -> Image.Image:
    """Gaussian blur with standard deviation ``sigma`` pixels (PIL's radius is the sigma)."""
    return image if sigma <= 0 else image.filter(ImageFilter.GaussianBlur(radius=float(sigma)))


def down_up(image: Image.Image, scale: float, interpolation: str = "bilinear") -> Image.Image:
    """Downscale by ``scale`` (0-1] then back to the original size: loses fine detail."""
    if scale >= 1:
        return image
    width, height = image.size
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = resample_filter(interpolation)
    return image.resize(small, resample).resize((width, height), resample)


def gaussian_noise(image: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    """Additive Gaussian noise, ``sigma`` in 8-bit grey levels, clipped to [0, 255]."""
    if sigma <= 0:
        return image
    array = np.asarray(image, dtype=np.float32)
    noisy = array + rng.normal(0.0, float(sigma), array.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), "RGB")


def adjust_color(
    image: Image.Image,
    brightness: float = 1.0,
    contrast: float = 1.0,
    saturation: float = 1.0,
    hue: float = 0.0,
) -> Image.Image:
    """Brightness/contrast/saturation factors (1 = unchanged), hue shift in turns [-0.5, 0.5]."""
    if brightness != 1.0:
        image = ImageEnhance.Brightness(image).enhance(brightness)
    if contrast != 1.0:
        image = ImageEnhance.Contrast(image).enhance(contrast)
    if saturation != 1.0:
        image = ImageEnhance.Color(image).enhance(saturation)
    if hue:
        hsv = np.asarray(image.convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(hue * 255)) % 256
        image = Image.fromarray(hsv, "HSV").convert("RGB")
    return image
