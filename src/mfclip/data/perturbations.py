"""Evaluation perturbations for robustness sweeps: ``jpeg=30,50 blur=1,2 social1080 crop=0.8``.

Each perturbation is a named operation with one strength value and a seed. It is part of the
evaluation transform, so it is applied to every image the dataset loads, real and fake alike:
a sweep that degraded only the fakes would overstate robustness and hide how many real photos
get flagged once they have been through the same processing. The random one (noise) seeds
itself from the seed and the image's own pixels, so results do not depend on data order,
batch size or the number of DataLoader workers.

Single operations (``name=v1,v2``, one setting per value):

* ``jpeg=Q``: re-encode as JPEG at quality ``Q`` (1-100);
* ``webp=Q``: re-encode as WebP at quality ``Q`` (1-100), what many sites now serve;
* ``rejpeg=Q``: JPEG at quality ``Q`` twice (an image saved, shared and saved again);
* ``blur=S``: Gaussian blur, sigma ``S`` pixels (>= 0);
* ``resize=F``: down-scale by ``F`` in (0, 1] and back up (bilinear): detail lost, size kept;
* ``crop=F``: central crop keeping a fraction ``F`` in (0, 1] of each side (a re-framed image);
* ``noise=S``: additive Gaussian noise, std ``S`` in 8-bit grey levels (>= 0);
* ``social=L``: down-scale (Lanczos) so the long side is at most ``L`` pixels (16-8192, never
  up-scaled), then JPEG at quality 75: how social networks re-publish uploads.

Chains named after how images travel (no value):

* ``social1080``: ``social=1080`` (long side at most 1080 px, then JPEG 75);
* ``social512``: ``social=512`` (long side at most 512 px, then JPEG 75; thumbnails, chats).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..errors import ConfigError
from . import functional as F

__all__ = [
    "CHAINS",
    "PERTURBATIONS",
    "Perturbation",
    "PerturbedTransform",
    "parse_perturbations",
]

#: JPEG quality of the ``social`` chains (a common re-publishing quality).
SOCIAL_JPEG_QUALITY = 75


@dataclass
class Perturbation:
    """One named, seeded perturbation at one strength; ``__call__(image) -> image``."""

    name: str
    value: float
    seed: int = 0
    #: What it does, in words (``{v}`` is the value), for reports.
    what: ClassVar[str] = "{v}"

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        raise NotImplementedError

    def __call__(self, image: Image.Image) -> Image.Image:
        digest = hashlib.blake2b(image.tobytes(), digest_size=8).digest()
        rng = np.random.default_rng([self.seed, int.from_bytes(digest, "big")])
        return self.apply(image.convert("RGB"), rng)

    @property
    def label(self) -> str:
        return f"{self.name}={self.value:g}"

    @property
    def description(self) -> str:
        return self.what.format(v=f"{self.value:g}")


class Jpeg(Perturbation):
    what = "JPEG at quality {v}"

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return F.jpeg(image, int(self.value))


class ReJpeg(Perturbation):
    what = "JPEG at quality {v}, twice"

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return F.jpeg(F.jpeg(image, int(self.value)), int(self.value))


class WebP(Perturbation):
    what = "WebP at quality {v}"

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, format="WEBP", quality=int(self.value))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return decoded.convert("RGB")


class Blur(Perturbation):
    what = "Gaussian blur, sigma {v} px"

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return F.gaussian_blur(image, self.value)


class Resize(Perturbation):
    what = "down-scaled by {v} and back up"

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return F.down_up(image, self.value)


class Crop(Perturbation):
    what = "central crop keeping {v} of each side"

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        width, height = image.size
        w, h = max(1, round(width * self.value)), max(1, round(height * self.value))
        left, top = (width - w) // 2, (height - h) // 2
        return image.crop((left, top, left + w, top + h))


class Noise(Perturbation):
    what = "Gaussian noise, std {v} grey levels"

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return F.gaussian_noise(image, self.value, rng)


class Social(Perturbation):
    what = f"long side at most {{v}} px, then JPEG {SOCIAL_JPEG_QUALITY}"

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        width, height = image.size
        scale = self.value / max(width, height)
        if scale < 1:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = image.resize(size, Image.Resampling.LANCZOS)
        return F.jpeg(image, SOCIAL_JPEG_QUALITY)

    @property
    def label(self) -> str:
        return f"social{self.value:g}"


def _factory(
    cls: type[Perturbation], name: str, check: Callable[[float], bool], rule: str
) -> Callable[..., Perturbation]:
    def make(value: float, seed: int = 0) -> Perturbation:
        value = float(value)
        if not check(value):
            raise ConfigError(f"perturbation {name}={value:g}: {rule}")
        return cls(name, value, seed)

    make.__doc__ = f"{name}: {rule}"
    return make


def _quality(v: float) -> bool:
    return 1 <= v <= 100 and v == int(v)


def _fraction(v: float) -> bool:
    return 0 < v <= 1


#: name -> factory(value, seed) -> Perturbation
PERTURBATIONS: dict[str, Callable[..., Perturbation]] = {
    "jpeg": _factory(Jpeg, "jpeg", _quality, "JPEG quality, a whole number in 1..100"),
    "webp": _factory(WebP, "webp", _quality, "WebP quality, a whole number in 1..100"),
    "rejpeg": _factory(ReJpeg, "rejpeg", _quality, "JPEG quality, a whole number in 1..100"),
    "blur": _factory(Blur, "blur", lambda v: v >= 0, "Gaussian sigma in pixels, >= 0"),
    "resize": _factory(Resize, "resize", _fraction, "down-up scale in (0, 1]"),
    "crop": _factory(Crop, "crop", _fraction, "fraction of each side kept, in (0, 1]"),
    "noise": _factory(Noise, "noise", lambda v: v >= 0, "Gaussian std in 8-bit grey levels, >= 0"),
    "social": _factory(
        Social, "social", lambda v: 16 <= v <= 8192, "longest side in pixels, 16..8192"
    ),
}

#: Named chains without a value -> (perturbation name, value).
CHAINS: dict[str, tuple[str, float]] = {
    "social1080": ("social", 1080),
    "social512": ("social", 512),
}


def _number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"perturbation {name}: '{value}' is not a number") from None


def parse_perturbations(spec: str, seed: int = 0) -> list[Perturbation]:
    """``"jpeg=30,50 social1080"`` (spaces or ``;`` between items) -> one per setting.

    An item is ``name=v1,v2`` (see :data:`PERTURBATIONS`) or a chain name (:data:`CHAINS`).
    """
    out = []
    for item in (t for t in re.split(r"[\s;]+", spec.strip()) if t):
        name, sep, values = item.partition("=")
        if name in CHAINS:
            if sep:
                raise ConfigError(f"perturbation '{name}' takes no value (got '{item}')")
            base, value = CHAINS[name]
            out.append(PERTURBATIONS[base](value, seed))
            continue
        if name not in PERTURBATIONS:
            known = ", ".join([*PERTURBATIONS, *CHAINS])
            raise ConfigError(f"unknown perturbation '{name}' (choose from {known})")
        if not sep or not values:
            raise ConfigError(f"perturbation '{item}' is not of the form {name}=v1,v2")
        out.extend(PERTURBATIONS[name](_number(name, v), seed) for v in values.split(","))
    return out


@dataclass
class PerturbedTransform:
    """Apply a perturbation to the decoded image, then the (evaluation) transform."""

    perturbation: Callable[[Image.Image], Image.Image]
    transform: Callable[..., Any]

    @property
    def uses_rng(self) -> bool:
        return bool(getattr(self.transform, "uses_rng", False))

    def __call__(self, image: Image.Image, rng: np.random.Generator | None = None) -> Any:
        image = self.perturbation(image)
        return self.transform(image, rng=rng) if self.uses_rng else self.transform(image)
