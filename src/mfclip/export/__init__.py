"""ONNX export (:mod:`.writer`, needs torch) and the torch-free runtime (:mod:`.runtime`).

Importing this package imports neither torch nor onnxruntime; names load on first use, so a
deployment with only numpy, Pillow and onnxruntime can ``from mfclip.export import
OnnxDetector``.
"""

from __future__ import annotations

from ..errors import ExportError
from ..lazy import lazy_attributes

_LAZY = {
    "DEFAULT_ATOL": "writer",
    "DEFAULT_OPSET": "writer",
    "ExportResult": "writer",
    "export_onnx": "writer",
    "onnx_metadata": "writer",
    "OnnxDetector": "runtime",
    "OnnxPrediction": "runtime",
    "preprocess_image": "runtime",
    "FORMAT": "metadata",
    "OnnxPreprocess": "metadata",
    "read_metadata": "metadata",
}

__all__ = [*sorted(_LAZY), "ExportError"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
