"""Image decoding that never surprises: always RGB, upright, or one clear error.

The one decoder of the package: training, evaluation, detection, the service (straight from
the uploaded bytes, no temporary file) and the torch-free ONNX runtime all call
:func:`decode_image`. It takes a path, ``bytes`` or a binary file object. Every failure mode
(missing, empty, not an image, truncated, too large, unsupported mode) becomes
:class:`ImageDecodeError` naming the source and the reason, so a data check can list all
problems at once and a training loop can skip a file without guessing what went wrong.
Needs numpy and Pillow only.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from ..errors import ImageDecodeError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageDecodeError",
    "ImageSource",
    "decode_image",
    "load_image",
    "to_rgb",
]

#: Decompression-bomb limit (pixels); PIL's default, enforced here regardless of PIL's global.
DEFAULT_MAX_PIXELS = 178_956_970


def _composite(image: Image.Image) -> Image.Image:
    """Alpha over white (what viewers show); fully opaque images are unchanged."""
    rgba = image.convert("RGBA")
    if rgba.getextrema()[3][0] == 255:
        return rgba.convert("RGB")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_depth(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey to 8-bit by scaling, not clipping (PIL's ``convert`` clips)."""
    array = np.asarray(image)
    if image.mode == "F":
        scale = 1.0 if float(np.nanmax(array, initial=0.0)) <= 1.0 else 1.0 / 255.0
        grey = np.clip(np.nan_to_num(array) * (255.0 * scale), 0, 255)
    else:
        grey = np.clip(array.astype(np.float64), 0, 65535) / 257.0
    return Image.fromarray(np.round(grey).astype(np.uint8), "L").convert("RGB")


def _cmyk(image: Image.Image) -> Image.Image:
    """CMYK through the embedded ICC profile when there is one, else PIL's formula."""
    profile = image.info.get("icc_profile")
    if profile:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            dst = ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(image, src, dst, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    return image.convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB the way a viewer would display it."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        return _composite(image)
    if mode.startswith("I") or mode == "F":
        return _high_depth(image)
    if mode == "CMYK":
        return _cmyk(image)
    if mode == "1":
        return image.convert("L").convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ValueError(f"unsupported colour mode {mode}: {exc}") from None


def _check_file(path: Path) -> None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except PermissionError:
        raise ImageDecodeError(path, "permission denied") from None
    except OSError as exc:
        raise ImageDecodeError(path, f"cannot access file: {exc.strerror or exc}") from None
    if path.is_dir():
        raise ImageDecodeError(path, "is a directory, not an image file")
    if stat.st_size == 0:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise ImageDecodeError(path, "permission denied")


_PIL_LIMIT_LOCK = threading.Lock()

#: What :func:`decode_image` reads: a path, the encoded bytes, or a binary file object.
ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


def _open(source: Path | BinaryIO, max_pixels: int | None) -> Image.Image:
    """``Image.open`` with PIL's own bomb check matched to ``max_pixels``.

    PIL refuses images above its global ``MAX_IMAGE_PIXELS``; when the caller allows more,
    the global is lifted for this one call (under a lock), so our limit is the one that counts.
    """
    pil_limit = Image.MAX_IMAGE_PIXELS
    if pil_limit is None or (max_pixels is not None and max_pixels <= pil_limit):
        return Image.open(source)
    with _PIL_LIMIT_LOCK:
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(source)
        finally:
            Image.MAX_IMAGE_PIXELS = pil_limit


def _stream(source: ImageSource, name: str | None) -> tuple[Path | BinaryIO, str]:
    """The object to hand to PIL and the name errors carry; checks files and empty input."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "<bytes>"
        if not data:
            raise ImageDecodeError(label, "empty file (0 bytes)")
        return io.BytesIO(data), label
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        _check_file(path)
        return path, name or str(path)
    if hasattr(source, "read"):
        label = name or str(getattr(source, "name", "<file object>"))
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"{label}: file objects must be opened in binary mode")
        if not data:
            raise ImageDecodeError(label, "empty file (0 bytes)")
        return io.BytesIO(data), label
    raise TypeError(f"expected a path, bytes or a binary file object, got {type(source).__name__}")


def decode_image(
    source: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str | None = None
) -> Image.Image:
    """Decode ``source`` to an upright RGB ``PIL.Image`` (first frame of animations).

    EXIF orientation is applied; grey, palette, alpha (over white), CMYK (through its ICC
    profile) and 16-bit images are converted to 8-bit RGB. ``max_pixels`` (``None``: no
    limit) guards against decompression bombs. ``name`` labels errors for bytes and streams.
    Raises :class:`ImageDecodeError` (a ``ValueError``) naming the source and the reason.
    """
    stream, label = _stream(source, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open(stream, max_pixels) as image:
                width, height = image.size
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageDecodeError(
                        label,
                        f"decompression bomb: {width}x{height} = {width * height} pixels, "
                        f"above the limit of {max_pixels} pixels",
                    )
                image.seek(0)
                image.load()
                upright = ImageOps.exif_transpose(image)
                return to_rgb(upright).copy()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(label, f"decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(label, "not an image (unrecognised or unsupported format)") from None
    except (OSError, SyntaxError, EOFError) as exc:
        text = str(exc) or type(exc).__name__
        if "truncated" in text.lower() or isinstance(exc, EOFError):
            raise ImageDecodeError(label, f"truncated image: {text}") from None
        raise ImageDecodeError(label, f"corrupt or unreadable image: {text}") from None
    except (ValueError, MemoryError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(label, f"cannot decode image: {exc}") from None


def load_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """:func:`decode_image` for a file path (the name most callers know)."""
    return decode_image(path, max_pixels)
