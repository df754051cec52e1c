"""Face detectors behind one small protocol.

The default (OpenCV's Haar cascade) ships inside ``opencv-python-headless``, so face cropping
works offline right after ``pip install``. A stronger detector plugs in by name (``yunet``
with the user's ONNX file) or as ``package.module:Class`` with keyword arguments.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .. import opencv

__all__ = [
    "DETECTORS",
    "FaceBox",
    "FaceDetector",
    "HaarFaceDetector",
    "YuNetFaceDetector",
    "build_detector",
]


@dataclass(frozen=True)
class FaceBox:
    """A face in pixel coordinates of the image it was found in."""

    x: float
    y: float
    w: float
    h: float
    score: float = 1.0
    #: Optional (K, 2) landmark coordinates (used for self-blended masks when available).
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def area(self) -> float:
        return self.w * self.h


@runtime_checkable
class FaceDetector(Protocol):
    """Anything that finds faces in an RGB ``uint8`` array of shape (H, W, 3)."""

    name: str

    def detect(self, image: np.ndarray) -> list[FaceBox]: ...


class HaarFaceDetector:
    """OpenCV Haar cascade (frontal faces); bundled with the wheel, no download needed."""

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: float = 0.05,
        max_side: int = 1024,
        pad: float = 0.25,
    ) -> None:
        cv2 = opencv.cv2()

        path = Path(cascade)
        if not path.is_file():
            path = Path(opencv.cascade_dir()) / cascade
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise RuntimeError(
                f"cannot load Haar cascade {path} (opencv-python-headless 4.x ships them; "
                f"OpenCV 5 removed cv2.CascadeClassifier)"
            )
        self.name = f"haar:{path.stem}"
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_side = max_side
        self.pad = pad

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        cv2 = opencv.cv2()

        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        # Large frames are searched at reduced size: same faces, a fraction of the time.
        scale = min(1.0, self.max_side / max(grey.shape))
        if scale < 1.0:
            grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)
        boxes = self._detect(grey, 0)
        if not boxes and self.pad > 0:
            # Already-cropped faces fill the frame and the cascade's window cannot reach past
            # the border: retry on a replicated margin (only then, since the margin also
            # invites large spurious boxes on ordinary photographs).
            boxes = self._detect(grey, round(self.pad * max(grey.shape)))
        return [FaceBox(b.x / scale, b.y / scale, b.w / scale, b.h / scale, b.score) for b in boxes]

    def _detect(self, grey: np.ndarray, off: int) -> list[FaceBox]:
        """Cascade detections on ``grey`` surrounded by an ``off``-pixel replicated margin."""
        cv2 = opencv.cv2()

        side = max(12, int(self.min_size * min(grey.shape)))
        if off:
            grey = cv2.copyMakeBorder(grey, off, off, off, off, cv2.BORDER_REPLICATE)
        boxes, _, weights = self._cascade.detectMultiScale3(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(side, side),
            outputRejectLevels=True,
        )
        return [
            FaceBox(float(x - off), float(y - off), float(w), float(h), float(s))
            for (x, y, w, h), s in zip(
                np.asarray(boxes).reshape(-1, 4), np.ravel(weights), strict=True
            )
        ]


class YuNetFaceDetector:
    """OpenCV's YuNet CNN (``cv2.FaceDetectorYN``) for users who have its ONNX weights."""

    def __init__(
        self, weights: str, score_threshold: float = 0.6, nms_threshold: float = 0.3
    ) -> None:
        cv2 = opencv.cv2()

        if not Path(weights).is_file():
            raise RuntimeError(f"YuNet weights not found: {weights}")
        self._detector = cv2.FaceDetectorYN.create(
            str(weights), "", (320, 320), score_threshold, nms_threshold, 5000
        )
        self.name = "yunet"

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        cv2 = opencv.cv2()

        bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
        self._detector.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self._detector.detect(bgr)
        out = []
        for row in faces if faces is not None else []:
            points = tuple((float(row[4 + 2 * i]), float(row[5 + 2 * i])) for i in range(5))
            out.append(FaceBox(*map(float, row[:4]), score=float(row[14]), landmarks=points))
        return out


DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "haar": HaarFaceDetector,
    "haar-alt2": lambda **kw: HaarFaceDetector("haarcascade_frontalface_alt2.xml", **kw),
    "yunet": YuNetFaceDetector,
}


def build_detector(spec: str = "haar", **kwargs: Any) -> FaceDetector:
    """A detector from a registered name or ``package.module:Class`` (called with ``kwargs``)."""
    if spec in DETECTORS:
        detector = DETECTORS[spec](**kwargs)
    elif ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import face detector '{spec}': {exc}") from None
        detector = factory(**kwargs)
    else:
        raise ValueError(
            f"unknown face detector '{spec}' (built-in: {', '.join(DETECTORS)}; "
            f"or give package.module:Class)"
        )
    if not callable(getattr(detector, "detect", None)):
        raise ValueError(f"face detector '{spec}' has no detect(image) method")
    if not hasattr(detector, "name"):
        detector.name = spec
    return detector
