"""What users hand to a detector: files, folders, globs, bytes, PIL images, arrays, tensors."""

from __future__ import annotations

import glob
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.media import walk_media
from ..preprocess.decode import DEFAULT_MAX_PIXELS, decode_image, to_rgb

__all__ = ["ImageLike", "describe", "expand_inputs", "to_rgb_image"]

#: One image as a user may pass it.
ImageLike = Any  # PIL image, array, tensor, path, bytes or binary file object


def expand_inputs(inputs: Iterable[str | Path]) -> list[str]:
    """Files, folders (recursive, images and videos) and glob patterns -> a sorted file list.

    A name that matches nothing is kept, so that it is reported as an error row.
    """
    out: list[str] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            out.extend(str(p) for p in walk_media(path, videos=True))
        elif any(ch in text for ch in "*?[") and not path.exists():
            matches = sorted(glob.glob(text, recursive=True))
            out.extend(m for m in matches if Path(m).is_file())
            if not matches:
                out.append(text)
        else:
            out.append(text)
    return out


def describe(item: ImageLike) -> str:
    """The ``source`` a result row shows for an input."""
    if isinstance(item, (str, Path)):
        return str(item)
    name = getattr(item, "name", None)
    if isinstance(name, str) and hasattr(item, "read"):
        return name
    return f"<{type(item).__name__}>"


def _array_to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.round(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"array images must be HxW, HxWx3 or HxWx4, got {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])


def to_rgb_image(image: ImageLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Any supported input -> an upright 8-bit RGB ``PIL.Image``.

    Paths, ``bytes`` and binary file objects go through :func:`decode_image` (EXIF, alpha on
    white, 16-bit, CMYK, pixel limit); PIL images through the same colour conversion; arrays
    ``HxW(x3/4)`` (uint8, or float in [0, 1]) and tensors ``(3, H, W)`` as pixels.
    """
    if isinstance(image, (str, Path, bytes, bytearray, memoryview, io.IOBase)) or hasattr(
        image, "read"
    ):
        return decode_image(image, max_pixels)
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"tensor images must be (3, H, W) or (1, H, W), got {tuple(t.shape)}")
        # The same rule as arrays: floats in [0, 1] are scaled, larger floats are 0-255 pixels.
        image = t.permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        return Image.fromarray(_array_to_uint8(image))
    raise TypeError(f"unsupported image type {type(image).__name__}")
