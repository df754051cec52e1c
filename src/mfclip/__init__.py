"""mfclip: MFCLIP (multi-modal fine-grained CLIP) for detecting forged face images.

Names are imported lazily so that ``mfclip --help``, data tools and worker processes do not pay
for importing torch and transformers until a model is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .config import ConfigError, MFCLIPConfig
    from .factory import create_model, resolve_config
    from .model.backbone import BackboneNotFoundError
    from .model.mfclip import MFCLIP, CheckpointError, MFCLIPOutput, Prediction
    from .presets import list_models

_LAZY = {
    "ConfigError": "config",
    "MFCLIPConfig": "config",
    "create_model": "factory",
    "resolve_config": "factory",
    "BackboneNotFoundError": "model.backbone",
    "MFCLIP": "model.mfclip",
    "CheckpointError": "model.mfclip",
    "MFCLIPOutput": "model.mfclip",
    "Prediction": "model.mfclip",
    "list_models": "presets",
}

__all__ = [
    "MFCLIP",
    "BackboneNotFoundError",
    "CheckpointError",
    "ConfigError",
    "MFCLIPConfig",
    "MFCLIPOutput",
    "Prediction",
    "__version__",
    "create_model",
    "list_models",
    "resolve_config",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mfclip' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
