"""ONNX export (:mod:`.writer`, needs torch) and the torch-free runtime (:mod:`.runtime`).

Importing this package imports neither torch nor onnxruntime; names load on first use, so a
deployment with only numpy, Pillow and onnxruntime can ``from mfclip.export import
OnnxDetector``.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name == "ExportError":
        from ..errors import ExportError

        return ExportError
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mfclip.export' has no attribute {name!r}")
