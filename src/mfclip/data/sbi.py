"""Self-blended pseudo-fakes (Shiohara & Yamasaki, CVPR 2022), so real faces alone can train.

An image is blended with a slightly altered copy of itself (colour and sharpness changed,
shifted/rescaled a little) inside a soft, randomly deformed face mask. The result carries
the blending boundary and statistical mismatch typical of face forgeries, without any
generator. Pseudo-fakes are labelled ``fake``, forgery type ``self_blended``, family
``manual``, generator ``sbi``.

The face region is the convex hull of landmarks when given; otherwise an ellipse inside the
face box. For crops made by ``mfclip data faces`` (no box given) the face box is the centre
square of side ``size / margin``, which is where the cropper put the detected face.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import opencv

__all__ = ["SBI_LABELS", "SelfBlend", "self_blend"]

SBI_LABELS = {"forgery_type": "self_blended", "family": "manual", "generator": "sbi"}


def _face_mask(
    height: int,
    width: int,
    rng: np.random.Generator,
    box: Sequence[float] | None,
    landmarks: np.ndarray | None,
    margin: float,
) -> np.ndarray:
    cv2 = opencv.cv2()

    mask = np.zeros((height, width), np.float32)
    if landmarks is not None and len(landmarks) >= 3:
        hull = cv2.convexHull(np.asarray(landmarks, np.float32).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1.0)
        return mask
    if box is None:
        side = min(height, width) / margin
        box = ((width - side) / 2, (height - side) / 2, side, side)
    x, y, w, h = box
    center = (round(x + w / 2), round(y + h * rng.uniform(0.5, 0.6)))
    axes = (
        max(1, round(w / 2 * rng.uniform(0.7, 0.95))),
        max(1, round(h / 2 * rng.uniform(0.8, 1.0))),
    )
    cv2.ellipse(mask, center, axes, float(rng.uniform(-10, 10)), 0, 360, 1.0, -1)
    return mask


def _deform(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random affine wobble, erosion or dilation, then a Gaussian blur: a soft, irregular edge."""
    cv2 = opencv.cv2()

    height, width = mask.shape
    size = max(1.0, float(np.sqrt(mask.sum())))
    angle, scale = rng.uniform(-5, 5), rng.uniform(0.95, 1.05)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-0.03, 0.03, 2) * size
    mask = cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_LINEAR)
    k = int(rng.integers(1, max(2, int(size * 0.08))))
    kernel = np.ones((k, k), np.uint8)
    mask = cv2.erode(mask, kernel) if rng.random() < 0.5 else cv2.dilate(mask, kernel)
    sigma = rng.uniform(0.02, 0.08) * size
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=max(0.5, sigma))
    peak = float(mask.max())
    return mask / peak if peak > 0 else mask


def _alter_source(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour shift, contrast/brightness, sharpen-or-blur, and a small shift/rescale."""
    cv2 = opencv.cv2()

    src = image.astype(np.float32)
    src = src * rng.uniform(0.9, 1.1) + rng.uniform(-20, 20, 3) + rng.uniform(-10, 10)
    mean = src.mean(axis=(0, 1), keepdims=True)
    src = (src - mean) * rng.uniform(0.9, 1.1) + mean
    blurred = cv2.GaussianBlur(src, (0, 0), sigmaX=rng.uniform(0.5, 1.5))
    src = blurred if rng.random() < 0.5 else src + (src - blurred) * rng.uniform(0.5, 1.5)
    height, width = src.shape[:2]
    scale = rng.uniform(0.97, 1.03)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, scale)
    matrix[:, 2] += rng.uniform(-0.02, 0.02, 2) * np.array([width, height])
    src = cv2.warpAffine(src, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
    return np.clip(src, 0, 255)


def self_blend(
    image: Image.Image | np.ndarray,
    rng: np.random.Generator,
    box: Sequence[float] | None = None,
    landmarks: np.ndarray | None = None,
    margin: float = 1.3,
    blend_ratios: Sequence[float] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0),
) -> tuple[np.ndarray, np.ndarray]:
    """``(blended uint8 RGB array, mask float32 in [0, 1])`` for one real face image.

    ``box`` is ``(x, y, w, h)`` of the face in the image's pixels; ``landmarks`` an (K, 2)
    array. The blend ratio is drawn from ``blend_ratios`` (SBI's set).
    """
    target = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if target.ndim != 3 or target.shape[2] != 3:
        raise ValueError(f"self_blend needs an (H, W, 3) RGB image, got shape {target.shape}")
    height, width = target.shape[:2]
    mask = _deform(_face_mask(height, width, rng, box, landmarks, margin), rng)
    mask *= float(rng.choice(np.asarray(blend_ratios, dtype=np.float32)))
    source = _alter_source(target, rng)
    blended = source * mask[..., None] + target.astype(np.float32) * (1.0 - mask[..., None])
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8), mask.astype(np.float32)


@dataclass
class SelfBlend:
    """Dataset hook: turn a real sample into a pseudo-fake with probability ``p``."""

    p: float = 0.5
    margin: float = 1.3

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        blended, _ = self_blend(image, rng, margin=self.margin)
        return Image.fromarray(blended, "RGB")
