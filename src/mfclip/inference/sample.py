"""A prepared model input: the uint8 crop and how to map its pixels back to the source."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..preprocess.geometry import Placement

__all__ = ["Sample", "Unit"]


@dataclass
class Sample:
    """One image (or video frame) ready for the model."""

    #: uint8 ``(S, S, 3)``: a quarter of float32's bytes between threads or processes.
    pixels: np.ndarray
    #: Model pixels -> source pixels (face crop and resize/crop composed).
    placement: Placement
    face_box: list[int] | None = None
    frame: int | None = None
    #: The decoded source image, kept only for explanations.
    rgb: np.ndarray | None = field(default=None, repr=False)


@dataclass
class Unit:
    """What decoding returns for one input: its samples, or the reason it failed."""

    source: str
    kind: str
    samples: list[Sample]
    error: str | None = None
