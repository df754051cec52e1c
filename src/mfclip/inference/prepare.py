"""Decode-side work for one image: optional face crop, then the model geometry.

:class:`Preparer` stops at uint8 pixels (normalising happens inside the model), runs in
decoding threads or worker processes, and builds face detectors lazily, one per thread
(OpenCV's detectors are not safe to share between threads; they are not pickled either).
The face crop is :func:`mfclip.data.faces.crop_face`, the one ``mfclip data faces`` writes,
so a face scores the same from a crop folder and from the original file.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..config import PreprocessConfig
from ..data.faces.crop import DEFAULT_MARGIN, DEFAULT_SIZE, crop_face, largest_face
from ..data.transforms import to_chw
from ..errors import MFCLIPError
from ..preprocess.geometry import Placement, fit
from .sample import Sample

__all__ = ["FaceSettings", "NoFaceError", "Preparer"]


class NoFaceError(MFCLIPError, ValueError):
    """No face was found where ``faces`` asked for one (a result row, not a failure)."""


@dataclass(frozen=True)
class FaceSettings:
    """How faces are found and cropped; the defaults are ``mfclip data faces``' defaults."""

    detector: str = "haar"
    margin: float = DEFAULT_MARGIN
    size: int = DEFAULT_SIZE


class Preparer:
    """RGB image -> :class:`Sample` (model crop + placement), faces optional."""

    def __init__(self, preprocess: PreprocessConfig, faces: FaceSettings | None = None) -> None:
        self.preprocess = preprocess
        self.faces = faces
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _detector(self) -> Any:
        from ..data.faces.detector import build_detector

        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = build_detector(self.faces.detector)
        return detector

    def prepare(
        self, image: Image.Image | np.ndarray, frame: int | None = None, keep_rgb: bool = False
    ) -> Sample:
        """RGB image (PIL or uint8 array) -> the model's input crop and its placement."""
        rgb = np.asarray(image) if keep_rgb or self.faces else None
        outer, face_box = Placement(), None
        if self.faces is not None:
            box = largest_face(self._detector().detect(rgb))
            if box is None:
                raise NoFaceError("no face found")
            face = crop_face(rgb, box, self.faces.margin, self.faces.size)
            image, outer, face_box = Image.fromarray(face.pixels), face.placement, face.box
        elif isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        pixels, placement = fit(image, self.preprocess)
        return Sample(pixels, placement.within(outer), face_box, frame, rgb if keep_rgb else None)

    @staticmethod
    def batch(samples: Sequence[Sample], device: torch.device | str) -> torch.Tensor:
        """Stack the uint8 crops as ``(B, 3, S, S)`` on ``device`` (4x fewer bytes than float)."""
        return to_chw(np.stack([s.pixels for s in samples])).to(device)
