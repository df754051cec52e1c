"""Run an ``mfclip export`` graph with ONNX Runtime: numpy, Pillow and onnxruntime only.

Decoding (:func:`mfclip.preprocess.decode.decode_image`) and the model geometry
(:func:`mfclip.preprocess.geometry.fit`) are the package's own, torch-free implementations, so
a file gets the same pixels here as in ``mfclip detect``; the graph normalises inside, as the
PyTorch model does. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..operating import OperatingPoint
from ..preprocess.decode import DEFAULT_MAX_PIXELS, decode_image, to_rgb
from ..preprocess.geometry import Placement, fit
from .metadata import (
    BOXES_NAME,
    INSTALL_HINT,
    LEGACY_FORMAT,
    PROB_NAME,
    OnnxPreprocess,
)

__all__ = ["OnnxDetector", "OnnxPrediction", "preprocess_image"]


@dataclass
class OnnxPrediction:
    """Scores of a batch: probabilities, verdicts at the stored threshold, richest patches."""

    #: ``(B,)`` float32 probability that each image is fake.
    fake_prob: np.ndarray
    #: ``(B,)`` bool, the verdict is ``fake`` (``fake_prob >= threshold``, or above the band).
    is_fake: np.ndarray
    threshold: float
    #: ``(B, 4)`` int64 richest patch ``(x0, y0, x1, y1)`` in model-input pixels, or ``None``
    #: when the model has no noise branch.
    boxes: np.ndarray | None = None
    #: The same boxes in the pixels of each original image.
    image_boxes: list[list[int]] | None = None
    #: ``real``, ``fake`` or ``uncertain`` per image (the model's operating point).
    labels: list[str] | None = None
    #: The verdicts in plain words (as ``mfclip detect`` words them).
    reasons: list[str] | None = None


def _rgb(image: Any, max_pixels: int | None) -> Image.Image:
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(
                f"arrays must be uint8 (H, W) or (H, W, 3) RGB, got {image.dtype} {image.shape}"
            )
        return to_rgb(Image.fromarray(image))
    return decode_image(image, max_pixels)  # paths, bytes, binary file objects


def preprocess_image(
    image: Any, preprocess: OnnxPreprocess, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, Placement]:
    """One image (PIL, uint8 array, path, bytes, file object) -> uint8 ``(3, S, S)`` + placement.

    The same decoder and geometry as ``mfclip detect`` (no torch).
    """
    pixels, placement = fit(_rgb(image, max_pixels), preprocess)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)), placement


class OnnxDetector:
    """Runs an ``mfclip export`` model with ONNX Runtime; needs numpy, Pillow and onnxruntime.

    ``OnnxDetector("model.onnx")(images)`` decodes and crops images exactly as mfclip does and
    returns an :class:`OnnxPrediction`. The threshold and preprocessing come from the model's
    metadata; ``threshold`` overrides it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        providers: Sequence[str] | None = None,
        threshold: float | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError(f"OnnxDetector needs onnxruntime: {INSTALL_HINT}") from exc
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model '{self.path}' does not exist")
        self.session = ort.InferenceSession(
            str(self.path), providers=list(providers or ["CPUExecutionProvider"])
        )
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.preprocess_config = OnnxPreprocess.from_metadata(self.metadata)
        training = json.loads(self.metadata.get("training") or "{}")
        training.setdefault("threshold", float(self.metadata.get("threshold", 0.5)))
        #: Threshold, rule and uncertain band stored with the model (``threshold`` overrides).
        self.operating_point = OperatingPoint.from_training_info(training, threshold)
        self.threshold = self.operating_point.threshold
        self.max_pixels = max_pixels
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        #: mfclip 0.1 graphs take CLIP-normalised float32 instead of uint8 pixels.
        self.legacy = self.metadata.get("format") == LEGACY_FORMAT
        batch_dim = self.session.get_inputs()[0].shape[0]
        #: Fixed batch size of the graph, or ``None`` for a dynamic batch axis.
        self.batch_size: int | None = batch_dim if isinstance(batch_dim, int) else None

    @property
    def has_boxes(self) -> bool:
        return BOXES_NAME in self.output_names

    def preprocess(self, images: Sequence[Any]) -> tuple[np.ndarray, list[Placement]]:
        """Images -> ``(B, 3, S, S)`` uint8 graph input and each image's placement."""
        prepared = [preprocess_image(im, self.preprocess_config, self.max_pixels) for im in images]
        return np.stack([p for p, _ in prepared]), [pl for _, pl in prepared]

    def _feed(self, chunk: np.ndarray) -> np.ndarray:
        if not self.legacy:
            return chunk
        pre = self.preprocess_config
        x = chunk.astype(np.float32) / np.float32(255.0)
        mean = np.asarray(pre.mean, np.float32)[:, None, None]
        std = np.asarray(pre.std, np.float32)[:, None, None]
        return (x - mean) / std

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw graph call on uint8 ``(B, 3, S, S)``; chunks and pads for fixed-batch graphs."""
        x = np.ascontiguousarray(images)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {x.shape}")
        if x.dtype != np.uint8:
            raise ValueError(f"images must be uint8 pixels, got {x.dtype}")
        step = self.batch_size or max(len(x), 1)
        probs: list[np.ndarray] = []
        boxes: list[np.ndarray] = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            n = len(chunk)
            if self.batch_size and n < self.batch_size:  # pad by repeating the last image
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch_size - n, 0)])
            outs = dict(
                zip(
                    self.output_names,
                    self.session.run(None, {self.input_name: self._feed(chunk)}),
                    strict=True,
                )
            )
            probs.append(outs[PROB_NAME][:n])
            if BOXES_NAME in outs:
                boxes.append(outs[BOXES_NAME][:n])
        prob = np.concatenate(probs) if probs else np.zeros(0, np.float32)
        return prob, (np.concatenate(boxes) if boxes else None)

    def predict_proba(self, images: Any) -> np.ndarray:
        """Fake probability per image, ``(B,)`` float32 (a single image gives ``(1,)``)."""
        return self.predict(images).fake_prob

    def predict(self, images: Any) -> OnnxPrediction:
        """Score one image or a sequence (PIL, uint8 arrays, paths, bytes, file objects)."""
        if isinstance(images, (Image.Image, np.ndarray, str, os.PathLike, bytes)) or hasattr(
            images, "read"
        ):
            images = [images]
        pixels, placements = self.preprocess(list(images))
        prob, boxes = self.run(pixels)
        image_boxes = None
        if boxes is not None:
            image_boxes = [
                pl.to_source(box) for pl, box in zip(placements, boxes.tolist(), strict=True)
            ]
        point = self.operating_point
        labels = [point.label(float(p)) for p in prob]
        return OnnxPrediction(
            prob,
            np.array([label == "fake" for label in labels], dtype=bool),
            self.threshold,
            boxes,
            image_boxes,
            labels,
            [point.describe(float(p)) for p in prob],
        )

    __call__ = predict
