"""mfclip: MFCLIP (multi-modal fine-grained CLIP) for detecting forged face images."""

from .config import ConfigError, MFCLIPConfig
from .factory import create_model, resolve_config
from .model.backbone import BackboneNotFoundError
from .model.mfclip import MFCLIP, CheckpointError, MFCLIPOutput, Prediction
from .presets import list_models
from .version import __version__

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
