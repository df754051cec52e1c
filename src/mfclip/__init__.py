"""mfclip: MFCLIP (multi-modal fine-grained CLIP) for detecting forged face images.

Names are imported lazily so that ``mfclip --help``, data tools and worker processes do not pay
for importing torch and transformers until a model is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_attributes
from .version import __version__

if TYPE_CHECKING:
    from .config import MFCLIPConfig
    from .errors import (
        BackboneNotFoundError,
        CheckpointError,
        ConfigError,
        ExportError,
        ImageDecodeError,
        MFCLIPError,
    )
    from .factory import create_model, resolve_config
    from .inference.detector import Detection, Detector
    from .loading import load_model
    from .model.mfclip import MFCLIP, MFCLIPOutput, Prediction
    from .presets import list_models

_LAZY = {
    "MFCLIPConfig": "config",
    "BackboneNotFoundError": "errors",
    "CheckpointError": "errors",
    "ConfigError": "errors",
    "ExportError": "errors",
    "ImageDecodeError": "errors",
    "MFCLIPError": "errors",
    "create_model": "factory",
    "resolve_config": "factory",
    "Detection": "inference.detector",
    "Detector": "inference.detector",
    "load_model": "loading",
    "MFCLIP": "model.mfclip",
    "MFCLIPOutput": "model.mfclip",
    "Prediction": "model.mfclip",
    "list_models": "presets",
}

__all__ = [
    "MFCLIP",
    "BackboneNotFoundError",
    "CheckpointError",
    "ConfigError",
    "Detection",
    "Detector",
    "ExportError",
    "ImageDecodeError",
    "MFCLIPConfig",
    "MFCLIPError",
    "MFCLIPOutput",
    "Prediction",
    "__version__",
    "create_model",
    "list_models",
    "load_model",
    "resolve_config",
]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
