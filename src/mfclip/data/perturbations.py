"""Evaluation perturbations for robustness sweeps: ``jpeg=30,50 blur=1,2 resize=0.5 noise=5``.

Each perturbation is a named operation with one strength value and a seed. The random one
(noise) seeds itself from the seed and the image's own pixels, so results do not depend on
data order, batch size or the number of DataLoader workers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from . import functional as F

__all__ = ["PERTURBATIONS", "Perturbation", "PerturbedTransform", "parse_perturbations"]


@dataclass
class Perturbation:
    """One named, seeded perturbation at one strength; ``__call__(image) -> image``."""

    name: str
    value: float
    seed: int = 0

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        raise NotImplementedError

    def __call__(self, image: Image.Image) -> Image.Image:
        digest = hashlib.blake2b(image.tobytes(), digest_size=8).digest()
        rng = np.random.default_rng([self.seed, int.from_bytes(digest, "big")])
        return self.apply(image.convert("RGB"), rng)

    @property
    def label(self) -> str:
        return f"{self.name}={self.value:g}"


class Jpeg(Perturbation):
    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return F.jpeg(image, int(self.value))


class Blur(Perturbation):
    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return F.gaussian_blur(image, self.value)


class Resize(Perturbation):
    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return F.down_up(image, self.value)


class Noise(Perturbation):
    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return F.gaussian_noise(image, self.value, rng)


def _factory(cls: type[Perturbation], name: str, check: Callable[[float], bool], rule: str):
    def make(value: float, seed: int = 0) -> Perturbation:
        value = float(value)
        if not check(value):
            raise ValueError(f"perturbation {name}={value:g}: {rule}")
        return cls(name, value, seed)

    make.__doc__ = f"{name}: {rule}"
    return make


#: name -> factory(value, seed) -> Perturbation
PERTURBATIONS: dict[str, Callable[..., Perturbation]] = {
    "jpeg": _factory(Jpeg, "jpeg", lambda v: 1 <= v <= 100, "JPEG quality in 1..100"),
    "blur": _factory(Blur, "blur", lambda v: v >= 0, "Gaussian sigma in pixels, >= 0"),
    "resize": _factory(Resize, "resize", lambda v: 0 < v <= 1, "down-up scale in (0, 1]"),
    "noise": _factory(Noise, "noise", lambda v: v >= 0, "Gaussian std in 8-bit grey levels, >= 0"),
}


def parse_perturbations(spec: str, seed: int = 0) -> list[Perturbation]:
    """``"jpeg=30,50 blur=1,2"`` (spaces or ``;`` between names) -> one perturbation per value."""
    out = []
    for item in (t for t in re.split(r"[\s;]+", spec.strip()) if t):
        name, sep, values = item.partition("=")
        if not sep or not values:
            raise ValueError(f"perturbation '{item}' is not of the form name=v1,v2")
        if name not in PERTURBATIONS:
            raise ValueError(
                f"unknown perturbation '{name}' (choose from {', '.join(PERTURBATIONS)})"
            )
        for value in values.split(","):
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"perturbation {name}: '{value}' is not a number") from None
            out.append(PERTURBATIONS[name](number, seed))
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
