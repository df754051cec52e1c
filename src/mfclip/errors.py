"""The package's exceptions, under one base class.

``except mfclip.MFCLIPError`` catches every error mfclip raises on purpose. Each class also
derives from the built-in type it replaced (``ValueError`` for bad input, ``RuntimeError`` for
a failed operation), so code written against earlier releases keeps catching them.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BackboneNotFoundError",
    "CheckpointError",
    "ConfigError",
    "ExportError",
    "ImageDecodeError",
    "MFCLIPError",
    "ManifestError",
    "NonFiniteLossError",
    "PromptError",
    "VideoDecodeError",
]


class MFCLIPError(Exception):
    """Base class of every exception mfclip raises deliberately."""


class ConfigError(MFCLIPError, ValueError):
    """A configuration value is unknown, of the wrong type, or inconsistent."""


class PromptError(MFCLIPError, ValueError):
    """A label cannot be turned into hierarchical prompts."""


class ManifestError(MFCLIPError, ValueError):
    """A manifest file is missing, malformed, or has invalid rows."""


class ImageDecodeError(MFCLIPError, ValueError):
    """An image cannot be used; ``path`` and ``reason`` are kept for reports."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple:  # picklable across worker processes
        return (type(self), (self.path, self.reason))


class VideoDecodeError(MFCLIPError, ValueError):
    """A video cannot be opened or has no decodable frame."""


class BackboneNotFoundError(MFCLIPError, RuntimeError):
    """The CLIP backbone is neither a local directory, a cached hub id, nor a built-in name."""


class CheckpointError(MFCLIPError, RuntimeError):
    """A saved model cannot be loaded (the message names the file and the fix)."""


class ExportError(MFCLIPError, RuntimeError):
    """The model could not be exported, or the exported graph disagrees with PyTorch."""


class NonFiniteLossError(MFCLIPError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
