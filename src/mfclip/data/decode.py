"""Image decoding that never surprises: always RGB, upright, or one clear error.

Every failure mode (missing, empty, not an image, truncated, too large, unsupported mode)
becomes :class:`ImageDecodeError` naming the file and the reason, so a data check can list
all problems at once and a training loop can skip a file without guessing what went wrong.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from ..errors import ImageDecodeError

__all__ = ["DEFAULT_MAX_PIXELS", "ImageDecodeError", "load_image", "to_rgb"]

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


def _open(path: Path, max_pixels: int | None) -> Image.Image:
    """``Image.open`` with PIL's own bomb check matched to ``max_pixels``.

    PIL refuses images above its global ``MAX_IMAGE_PIXELS``; when the caller allows more,
    the global is lifted for this one call (under a lock), so our limit is the one that counts.
    """
    pil_limit = Image.MAX_IMAGE_PIXELS
    if pil_limit is None or (max_pixels is not None and max_pixels <= pil_limit):
        return Image.open(path)
    with _PIL_LIMIT_LOCK:
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = pil_limit


def load_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``path`` to an upright RGB ``PIL.Image`` (first frame of animations).

    EXIF orientation is applied; grey, palette, alpha, CMYK and 16-bit images are converted
    to RGB. ``max_pixels`` (``None``: no limit) guards against decompression bombs.
    Raises :class:`ImageDecodeError` (a ``ValueError``) naming the file and the reason.
    """
    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open(path, max_pixels) as image:
                width, height = image.size
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageDecodeError(
                        path,
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
        raise ImageDecodeError(path, f"decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(path, "not an image (unrecognised or unsupported format)") from None
    except (OSError, SyntaxError, EOFError) as exc:
        text = str(exc) or type(exc).__name__
        if "truncated" in text.lower() or isinstance(exc, EOFError):
            raise ImageDecodeError(path, f"truncated image: {text}") from None
        raise ImageDecodeError(path, f"corrupt or unreadable image: {text}") from None
    except (ValueError, MemoryError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(path, f"cannot decode image: {exc}") from None
