"""``load_model``: the one way every command and API turns a source into a ready model.

``detect``, ``evaluate``, ``export``, ``serve``, ``model info`` and ``Detector.from_pretrained``
all call it, so they accept the same sources and fail with the same messages.
"""

from __future__ import annotations

import os

import torch

from .device import pick_device
from .model.mfclip import MFCLIP

__all__ = ["load_model"]


def load_model(
    source: str | os.PathLike | MFCLIP, device: str | torch.device = "cpu", eval: bool = True
) -> MFCLIP:
    """A model folder, a training run folder (its best checkpoint), or a Hugging Face Hub id.

    ``device="auto"`` picks CUDA, then MPS, then the CPU. An :class:`MFCLIP` passes through
    (moved to ``device``). Raises :class:`mfclip.CheckpointError` naming the file and the fix
    when the source is missing, truncated, modified, pickle-only, or of another architecture.
    """
    model = source if isinstance(source, MFCLIP) else MFCLIP.from_pretrained(source)
    model = model.to(pick_device(device))
    return model.eval() if eval else model
